/**
 * A Pod's workload as Hubble names it (flow.Endpoint.workloads): its controlling owner, with a
 * ReplicaSet named for its Deployment and a Job for its CronJob, the way Cilium derives them from the
 * names alone (pkg/k8s/utils, GetWorkloadMetaFromPod) without reading the owners' objects:
 *
 *   podWorkload({ ownerReferences: [{ kind: 'ReplicaSet', name: 'api-7d9f8c6b5', controller: true }], labels: { 'pod-template-hash': '7d9f8c6b5' } })
 *     // { kind: 'Deployment', name: 'api' }
 *   podWorkload({ ownerReferences: [{ kind: 'Job', name: 'backup-28911520', controller: true }] })
 *     // { kind: 'CronJob', name: 'backup' }
 *
 * A Pod with no controlling owner has no workload (undefined).
 */

export interface OwnerRef {
  kind: string;
  name: string;
  controller?: boolean | undefined;
}

export interface Workload {
  kind: string;
  name: string;
}

/** The Deployment controller's suffix: "-" and the pod-template-hash (safe-encoded, 1-10 characters). */
const RS_SUFFIX = /^(.+)-([0-9a-z]{1,10})$/;
/** The CronJob controller names its Jobs "<cronjob>-<scheduled time in minutes>". */
const JOB_SUFFIX = /^(.+)-(\d{8,})$/;

export function podWorkload(pod: { ownerReferences?: readonly OwnerRef[] | undefined; labels?: Readonly<Record<string, string>> | undefined }): Workload | undefined {
  const owner = pod.ownerReferences?.find((o) => o.controller === true);
  if (!owner) return undefined;
  if (owner.kind === 'ReplicaSet') {
    const hash = pod.labels?.['pod-template-hash'];
    if (hash !== undefined) return owner.name.endsWith(`-${hash}`) ? { kind: 'Deployment', name: owner.name.slice(0, -hash.length - 1) } : { kind: 'ReplicaSet', name: owner.name };
    const m = RS_SUFFIX.exec(owner.name);
    return m?.[1] ? { kind: 'Deployment', name: m[1] } : { kind: 'ReplicaSet', name: owner.name };
  }
  if (owner.kind === 'Job') {
    const m = JOB_SUFFIX.exec(owner.name);
    return m?.[1] ? { kind: 'CronJob', name: m[1] } : { kind: 'Job', name: owner.name };
  }
  return { kind: owner.kind, name: owner.name };
}
