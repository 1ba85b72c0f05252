/**
 * A test kubelet for one node: what kubelet and the container runtime do for
 * meshd, against a real API server. runPod() creates the Pod object (bound to
 * the node), a network namespace, runs the node's CNI conflist ADD with the
 * pod's namespace/name in CNI_ARGS (as containerd passes them), and patches
 * the pod's status (podIP, podIPs, phase Running, Ready) through the API.
 * deletePod() runs CNI DEL, removes the namespace and deletes the Pod.
 * cleanup() does that for every pod still there, each step bounded in time,
 * a failing step not stopping the others.
 *
 *   const kubelet = new TestKubelet({ kube, nodeName, cniConfDir, cniBinDir });
 *   t.after(() => kubelet.cleanup());        // before the agent's and the cluster's cleanup
 *   const web = await kubelet.runPod('web', { labels: { app: 'web' } });
 *   await kubelet.deletePod(web);
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { CONFLIST_NAME } from '../cni/installer.js';
import { MeshdError } from '../util/errors.js';
import { CniRuntime, firstAddress, hostSide, type Attachment, type Conflist } from './cni-runtime.js';
import type { KubeCluster } from './kube-cluster.js';
import { Sandbox } from './netns.js';

export interface KubeletOptions {
  kube: KubeCluster;
  /** The Pod objects' spec.nodeName. */
  nodeName: string;
  /** Where the agent installed its conflist, and the plugins. */
  cniConfDir: string;
  cniBinDir: string;
}

export interface KubeletPod {
  namespace: string;
  name: string;
  /** The network namespace's name (for `ip netns exec`). */
  ns: string;
  ip: string;
  /** The host end of the pod's veth, as the CNI result names it. */
  hostIf: string;
}

interface RunningPod extends KubeletPod {
  att: Attachment;
  list: Conflist;
  sandbox: Sandbox;
  /** Which of the pod's pieces exist, so a partial runPod() is undone as far as it got. */
  created: { object: boolean; network: boolean };
}

const ConflistSchema = z.object({
  cniVersion: z.string(),
  name: z.string(),
  plugins: z.array(z.object({ type: z.string() }).passthrough()).min(1),
});

function kubeletError(message: string, cause?: unknown): MeshdError {
  return new MeshdError('MESHD_KUBE_TEST_KUBELET_FAILED', message, { kind: 'failed', ...(cause === undefined ? {} : { cause }) });
}

export class TestKubelet {
  private readonly pods = new Map<string, RunningPod>();
  private readonly runtime: CniRuntime;

  constructor(private readonly o: KubeletOptions) {
    this.runtime = new CniRuntime([o.cniBinDir, '/usr/lib/cni']);
  }

  private async kubectl(args: string[], what: string): Promise<string> {
    const r = await this.o.kube.kubectl(args);
    if (r.code !== 0) throw kubeletError(`${what}: kubectl exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** Creates the Pod, its network (CNI ADD) and reports it Running and Ready; returns once all three are done. */
  async runPod(name: string, o: { namespace?: string; labels?: Record<string, string>; containerPorts?: number[]; namedPorts?: Array<{ name: string; port: number }> } = {}): Promise<KubeletPod> {
    const namespace = o.namespace ?? 'default';
    const key = `${namespace}/${name}`;
    if (this.pods.has(key)) throw kubeletError(`${key} runs already`);
    const raw = readFileSync(join(this.o.cniConfDir, CONFLIST_NAME), 'utf8');
    const list = ConflistSchema.parse(JSON.parse(raw));
    const sandbox = new Sandbox('kl');
    const containerId = `kubelet-${process.pid}-${namespace}-${name}`;
    const pod: RunningPod = { namespace, name, ns: '', ip: '', hostIf: '', att: { containerId, netns: '', ifname: 'eth0' }, list, sandbox, created: { object: false, network: false } };
    this.pods.set(key, pod);
    try {
      await this.o.kube.apply({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace, labels: o.labels ?? {} },
        spec: {
          nodeName: this.o.nodeName,
          containers: [{ name: 'c', image: 'example.invalid/c', ports: [...(o.containerPorts ?? []).map((p) => ({ containerPort: p })), ...(o.namedPorts ?? []).map((p) => ({ name: p.name, containerPort: p.port }))] }],
        },
      });
      pod.created.object = true;
      pod.ns = await sandbox.netns('p');
      pod.att = { containerId, netns: `/var/run/netns/${pod.ns}`, ifname: 'eth0', args: { K8S_POD_NAMESPACE: namespace, K8S_POD_NAME: name } };
      const res = await this.runtime.addList(list, pod.att).catch((e: unknown) => {
        throw kubeletError(`CNI ADD of ${key}`, e);
      });
      pod.created.network = true;
      pod.ip = firstAddress(res).split('/')[0] ?? '';
      pod.hostIf = hostSide(res);
      if (pod.ip === '') throw kubeletError(`CNI ADD of ${key} returned no address`);
      const now = new Date().toISOString();
      const status = {
        status: {
          phase: 'Running',
          podIP: pod.ip,
          podIPs: [{ ip: pod.ip }],
          startTime: now,
          conditions: [
            { type: 'Initialized', status: 'True', lastTransitionTime: now },
            { type: 'ContainersReady', status: 'True', lastTransitionTime: now },
            { type: 'Ready', status: 'True', lastTransitionTime: now },
          ],
        },
      };
      await this.kubectl(['patch', 'pod', name, '-n', namespace, '--subresource=status', '--type=merge', '-p', JSON.stringify(status)], `status of ${key}`);
    } catch (e) {
      await this.deletePod(pod).catch(() => undefined); // the first error is the one to report; deletePod reports its own in cleanup()
      throw e;
    }
    return { namespace, name, ns: pod.ns, ip: pod.ip, hostIf: pod.hostIf };
  }

  /**
   * CNI DEL, the namespace, then the Pod object, as kubelet tears a pod down.
   * Every step is tried; the first failure is thrown after the others ran.
   */
  async deletePod(p: Pick<KubeletPod, 'namespace' | 'name'>): Promise<void> {
    const key = `${p.namespace}/${p.name}`;
    const pod = this.pods.get(key);
    if (!pod) return;
    const failures: unknown[] = [];
    if (pod.created.network) {
      await this.runtime.delList(pod.list, pod.att).then(
        () => (pod.created.network = false),
        (e: unknown) => failures.push(kubeletError(`CNI DEL of ${key}`, e)),
      );
    }
    await pod.sandbox.cleanup().catch((e: unknown) => failures.push(e));
    if (pod.created.object) {
      // No container runtime confirms a graceful deletion here: the object goes at once.
      await this.kubectl(['delete', 'pod', p.name, '-n', p.namespace, '--grace-period=0', '--force', '--ignore-not-found'], `delete ${key}`).then(
        () => (pod.created.object = false),
        (e: unknown) => failures.push(e),
      );
    }
    this.pods.delete(key);
    if (failures.length > 0) throw failures[0];
  }

  /** Pods this kubelet runs now. */
  running(): KubeletPod[] {
    return [...this.pods.values()].map(({ namespace, name, ns, ip, hostIf }) => ({ namespace, name, ns, ip, hostIf }));
  }

  /** Deletes every pod still running, each bounded to `stepMs`; problems are printed, not thrown (a cleanup must finish). */
  async cleanup(stepMs = 30_000): Promise<void> {
    const problems: string[] = [];
    for (const pod of [...this.pods.values()]) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          this.deletePod(pod),
          new Promise((_, reject) => (timer = setTimeout(() => reject(kubeletError(`timed out after ${stepMs} ms`)), stepMs))),
        ]);
      } catch (e) {
        problems.push(`${pod.namespace}/${pod.name}: ${e instanceof Error ? e.message : String(e)}`);
        this.pods.delete(`${pod.namespace}/${pod.name}`);
        await pod.sandbox.cleanup().catch(() => undefined); // a stuck step must not leave the namespace behind; its failure is the one reported above
      } finally {
        clearTimeout(timer);
      }
    }
    if (problems.length > 0) process.stderr.write(`test kubelet cleanup problems:\n  ${problems.join('\n  ')}\n`);
  }
}
