/**
 * A conformance test node: what kubelet and a container runtime do, enough
 * to run the Gateway API conformance suite's backends against a real API
 * server and a real meshd agent. It registers its v1 Node, watches every Pod,
 * binds unscheduled ones to itself (there is no scheduler), and runs each Pod
 * bound to it: a network namespace wired by the node's meshd-cni (CNI ADD
 * with the pod's namespace/name in CNI_ARGS, as containerd passes them), then
 * per container the binary its image maps to, inside that namespace, with the
 * container's command/args and env (values, downward-API fieldRefs such as
 * metadata.name/metadata.namespace/status.podIP, secretKeyRef and
 * configMapKeyRef). Readiness is reported in the Pod's status once every
 * declared container port is bound in the pod's namespace (any listening
 * socket when none is declared). A graceful deletion (deletionTimestamp) or a
 * deleted object stops the processes, runs CNI DEL, removes the namespace and
 * then removes the object, as kubelet confirms a deletion.
 *
 *   const node = new ConformanceNode({ kube, nodeName, cniConfDir, cniBinDir, images: { [ECHO_BASIC_V1]: echoBasicBin }, logDir });
 *   await node.start();                 // registers the Node, starts watching
 *   ...                                 // Deployments' Pods run as the controllers make them
 *   await node.close();                 // everything it made is undone, each step bounded
 *
 * No container images are pulled: an image maps to a binary built from the
 * same Go module (scripts/gateway-conformance.sh). A Pod whose image has no
 * binary is refused clearly: its status says ErrImageNeverPull with the image
 * named, and it never becomes Ready. Volumes: secret and configMap volumes are
 * written to a per-pod directory, and env values and args that name a path
 * under a volume's mountPath are rewritten to that directory (the processes
 * share the host's mount namespace); other volumes (the projected
 * service-account token the API server adds) are not materialised.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { Agent, request } from 'undici';
import { z } from 'zod';
import { CONFLIST_NAME } from '../../src/cni/installer.js';
import { MeshdError } from '../../src/util/errors.js';
import { CniRuntime, firstAddress, type Attachment, type Conflist } from './cni-runtime.js';
import type { KubeCluster } from '../../src/devcluster/kube-cluster.js';
import { Sandbox } from '../../src/devcluster/netns.js';

export interface ConformanceNodeOptions {
  kube: KubeCluster;
  nodeName: string;
  /** Where the agent installed its conflist, and the plugins. */
  cniConfDir: string;
  cniBinDir: string;
  /** Image reference → the binary that stands for it. */
  images: Readonly<Record<string, string>>;
  /** Per-pod process logs and volume files go here (one subdirectory per pod). */
  logDir: string;
  /** The Node's InternalIP and the Pods' hostIP (default: the host's first non-loopback IPv4). */
  nodeIP?: string;
  /** Progress lines (bind, run, ready, delete, refusals); default: none. */
  log?: (line: string) => void;
}

const FieldRef = z.object({ fieldPath: z.string() });
const KeyRef = z.object({ name: z.string(), key: z.string(), optional: z.boolean().optional() });
const EnvVarSchema = z.object({
  name: z.string(),
  value: z.string().optional(),
  valueFrom: z.object({ fieldRef: FieldRef.optional(), secretKeyRef: KeyRef.optional(), configMapKeyRef: KeyRef.optional() }).passthrough().optional(),
});
const ContainerSchema = z.object({
  name: z.string(),
  image: z.string(),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  env: z.array(EnvVarSchema).optional(),
  ports: z.array(z.object({ containerPort: z.number().int().min(1).max(65535), protocol: z.enum(['TCP', 'UDP', 'SCTP']).optional() })).optional(),
  volumeMounts: z.array(z.object({ name: z.string(), mountPath: z.string() })).optional(),
});
const ItemsSchema = z.array(z.object({ key: z.string(), path: z.string() })).optional();
const VolumeSchema = z.object({
  name: z.string(),
  secret: z.object({ secretName: z.string(), items: ItemsSchema, optional: z.boolean().optional() }).optional(),
  configMap: z.object({ name: z.string(), items: ItemsSchema, optional: z.boolean().optional() }).optional(),
});
const PodSchema = z.object({
  metadata: z.object({
    name: z.string(),
    namespace: z.string(),
    uid: z.string(),
    resourceVersion: z.string().optional(),
    deletionTimestamp: z.string().nullish(),
    labels: z.record(z.string(), z.string()).optional(),
  }),
  spec: z.object({
    nodeName: z.string().optional(),
    serviceAccountName: z.string().optional(),
    containers: z.array(ContainerSchema).min(1),
    volumes: z.array(VolumeSchema).optional(),
  }),
});
type Pod = z.infer<typeof PodSchema>;

/** Whether the Pod is being deleted gracefully (kubelet's cue to stop it and confirm). */
function deleting(pod: Pod): boolean {
  return typeof pod.metadata.deletionTimestamp === 'string';
}
type Container = z.infer<typeof ContainerSchema>;

const WatchEventSchema = z.object({ type: z.enum(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR']), object: z.object({ metadata: z.object({ resourceVersion: z.string().optional() }).passthrough().optional(), code: z.number().optional() }).passthrough() });
const PodListSchema = z.object({ metadata: z.object({ resourceVersion: z.string() }), items: z.array(z.unknown()) });
const DataSchema = z.object({ data: z.record(z.string(), z.string()).nullish() });

function nodeError(message: string, cause?: unknown): MeshdError {
  return new MeshdError('MESHD_CONFORMANCE_NODE_FAILED', message, { kind: 'failed', ...(cause === undefined ? {} : { cause }) });
}

class ImageRefused extends MeshdError {
  constructor(readonly image: string) {
    super('MESHD_CONFORMANCE_NODE_IMAGE_UNKNOWN', `image ${image} has no binary on this test node`, { kind: 'not-found' });
  }
}

interface RunningContainer {
  name: string;
  image: string;
  bin: string;
  argv: string[];
  env: Record<string, string>;
  /** TCP and UDP ports the container declares. */
  ports: Array<{ port: number; udp: boolean }>;
  child: ChildProcess | null;
  restarts: number;
  startedAt: string;
}

interface PodRun {
  key: string;
  uid: string;
  namespace: string;
  name: string;
  sandbox: Sandbox;
  att: Attachment | null;
  ip: string;
  dir: string;
  containers: RunningContainer[];
  ready: boolean;
  stopping: boolean;
}

/** The first non-loopback IPv4 address of the host, or 127.0.0.1. */
function hostIPv4(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

/** Ports bound in the network namespace of `pid`: TCP in LISTEN, UDP bound. */
function boundPorts(pid: number): { tcp: Set<number>; udp: Set<number> } {
  const read = (file: string, listenOnly: boolean): Set<number> => {
    const out = new Set<number>();
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      return out; // the process is gone: nothing is bound
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const local = f[1];
      if (local === undefined || (listenOnly && f[3] !== '0A')) continue;
      out.add(parseInt(local.split(':')[1] ?? '0', 16));
    }
    return out;
  };
  const tcp = new Set([...read('tcp', true), ...read('tcp6', true)]);
  const udp = new Set([...read('udp', false), ...read('udp6', false)]);
  return { tcp, udp };
}

let pdeathsig: boolean | undefined;

export class ConformanceNode {
  private readonly runs = new Map<string, PodRun>();
  private readonly chains = new Map<string, Promise<void>>();
  private readonly refused = new Set<string>();
  /** Uids of refused Pods: their status is written once, not on every event it causes. */
  private readonly refusedPods = new Set<string>();
  private readonly retry = new Map<string, NodeJS.Timeout>();
  /** Retries so far per pod uid (the back-off's exponent); forgotten when the pod is deleted. */
  private readonly attempts = new Map<string, number>();
  /** The tail of the CNI ADD queue (sandboxSlot). */
  private addQueue: Promise<void> = Promise.resolve();
  private readonly runtime: CniRuntime;
  private readonly dispatcher: Agent;
  private readonly abort = new AbortController();
  private readonly nodeIP: string;
  private watching: Promise<void> | null = null;
  private closed = false;
  private nodeCreated = false;

  constructor(private readonly o: ConformanceNodeOptions) {
    this.runtime = new CniRuntime([o.cniBinDir, '/usr/lib/cni']);
    this.dispatcher = new Agent({ connect: { ca: readFileSync(o.kube.caPath) } });
    this.nodeIP = o.nodeIP ?? hostIPv4();
  }

  private log(line: string): void {
    this.o.log?.(`conformance-node: ${line}`);
  }

  /** One API call with the admin token; resolves with the status and the parsed JSON body (null when not JSON). */
  private async api(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; json: unknown }> {
    const res = await request(`${this.o.kube.server}${path}`, {
      method,
      dispatcher: this.dispatcher,
      headers: { authorization: `Bearer ${this.o.kube.token}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': contentType }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.body.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON (an error page); callers go by the status
    }
    return { status: res.statusCode, json };
  }

  private async mustApi(what: string, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown, contentType?: string): Promise<unknown> {
    const r = await this.api(method, path, body, contentType);
    if (r.status >= 300) throw nodeError(`${what}: ${method} ${path} answered ${r.status}: ${JSON.stringify(r.json)}`);
    return r.json;
  }

  /** Registers the Node (Ready, its InternalIP) and starts watching Pods. */
  async start(): Promise<void> {
    const name = this.o.nodeName;
    const existing = await this.api('GET', `/api/v1/nodes/${name}`);
    if (existing.status === 404) {
      await this.mustApi('create the Node', 'POST', '/api/v1/nodes', {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' } },
      });
      this.nodeCreated = true;
    }
    const now = new Date().toISOString();
    await this.mustApi('report the Node Ready', 'PATCH', `/api/v1/nodes/${name}/status`, {
      status: {
        conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'conformance test node', lastHeartbeatTime: now, lastTransitionTime: now }],
        addresses: [{ type: 'InternalIP', address: this.nodeIP }, { type: 'Hostname', address: name }],
      },
    }, 'application/merge-patch+json');
    this.watching = this.watchLoop();
  }

  /** Pods this node runs now, with their addresses. */
  pods(): Array<{ namespace: string; name: string; ip: string; ready: boolean; netns: string }> {
    return [...this.runs.values()].map((r) => ({ namespace: r.namespace, name: r.name, ip: r.ip, ready: r.ready, netns: r.att?.netns ?? '' }));
  }

  /** Images of Pods refused because no binary stands for them. */
  refusedImages(): string[] {
    return [...this.refused];
  }

  private async watchLoop(): Promise<void> {
    let rv: string | undefined;
    while (!this.closed) {
      try {
        if (rv === undefined) {
          const list = PodListSchema.parse(await this.mustApi('list Pods', 'GET', '/api/v1/pods'));
          rv = list.metadata.resourceVersion;
          const seen = new Set<string>();
          for (const item of list.items) {
            const pod = this.parsePod(item);
            if (pod) {
              seen.add(pod.metadata.uid);
              this.onPod('ADDED', pod);
            }
          }
          // Pods deleted while the watch was down never get their DELETED event.
          for (const run of this.runs.values()) if (!seen.has(run.uid)) this.enqueue(run.uid, () => this.teardown(run.uid));
        }
        const res = await request(`${this.o.kube.server}/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=240&resourceVersion=${rv}`, {
          dispatcher: this.dispatcher,
          headers: { authorization: `Bearer ${this.o.kube.token}`, accept: 'application/json' },
          signal: this.abort.signal,
        });
        if (res.statusCode === 410) {
          rv = undefined;
          await res.body.dump();
          continue;
        }
        if (res.statusCode !== 200) throw nodeError(`watch Pods answered ${res.statusCode}: ${await res.body.text()}`);
        let buf = '';
        for await (const chunk of res.body) {
          buf += Buffer.from(chunk).toString('utf8');
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (line.trim() === '') continue;
            const ev = WatchEventSchema.safeParse(JSON.parse(line));
            if (!ev.success) continue;
            if (ev.data.type === 'ERROR') {
              if (ev.data.object.code === 410) rv = undefined;
              break;
            }
            rv = ev.data.object.metadata?.resourceVersion ?? rv;
            if (ev.data.type === 'BOOKMARK') continue;
            const pod = this.parsePod(ev.data.object);
            if (pod) this.onPod(ev.data.type, pod);
          }
          if (rv === undefined) break;
        }
      } catch (e) {
        if (this.closed) return;
        this.log(`watch: ${e instanceof Error ? e.message : String(e)}; retrying`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  private parsePod(raw: unknown): Pod | null {
    const r = PodSchema.safeParse(raw);
    if (r.success) return r.data;
    this.log(`ignoring a Pod this node cannot read: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    return null;
  }

  /** Runs `fn` after every earlier step for the same pod (per-pod order, pods in parallel). */
  private enqueue(uid: string, fn: () => Promise<void>): void {
    const prev = this.chains.get(uid) ?? Promise.resolve();
    const next = prev.then(fn).catch((e: unknown) => this.log(`pod ${uid}: ${e instanceof Error ? e.message : String(e)}`));
    this.chains.set(uid, next);
    void next.then(() => {
      if (this.chains.get(uid) === next) this.chains.delete(uid);
    });
  }

  private onPod(type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: Pod): void {
    const uid = pod.metadata.uid;
    if (type === 'DELETED') {
      this.attempts.delete(uid);
      this.enqueue(uid, () => this.teardown(uid));
      return;
    }
    const nodeName = pod.spec.nodeName ?? '';
    if (nodeName === '') {
      if (!deleting(pod)) this.enqueue(uid, () => this.bind(pod).catch((e: unknown) => this.failed(pod, 'bind', e)));
      return;
    }
    if (nodeName !== this.o.nodeName) return;
    if (deleting(pod)) {
      this.enqueue(uid, async () => {
        await this.teardown(uid);
        // Kubelet confirms a graceful deletion once the containers are gone; the uid precondition spares a successor of the same name.
        await this.api('DELETE', `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid } });
      });
      return;
    }
    if (!this.runs.has(uid) && !this.refusedPods.has(uid)) this.enqueue(uid, () => this.run(pod).catch((e: unknown) => this.failed(pod, 'run', e)));
  }

  /** A failed bind or start (an API call that timed out on a loaded machine, say) is tried again later, as kubelet and the scheduler do. */
  private failed(pod: Pod, step: string, e: unknown): void {
    this.log(`${pod.metadata.namespace}/${pod.metadata.name}: ${step} failed, trying again: ${e instanceof Error ? e.message : String(e)}`);
    this.retryLater(pod);
  }

  private async bind(pod: Pod): Promise<void> {
    const { namespace, name } = pod.metadata;
    const r = await this.api('POST', `/api/v1/namespaces/${namespace}/pods/${name}/binding`, {
      apiVersion: 'v1',
      kind: 'Binding',
      metadata: { name, namespace, uid: pod.metadata.uid },
      target: { apiVersion: 'v1', kind: 'Node', name: this.o.nodeName },
    });
    // 409: bound already (a repeated event); 404: deleted meanwhile.
    if (r.status >= 300 && r.status !== 409 && r.status !== 404) throw nodeError(`bind ${namespace}/${name}: ${r.status} ${JSON.stringify(r.json)}`);
    if (r.status < 300) this.log(`bound ${namespace}/${name} to ${this.o.nodeName}`);
  }

  private statusPath(namespace: string, name: string): string {
    return `/api/v1/namespaces/${namespace}/pods/${name}/status`;
  }

  private async patchStatus(namespace: string, name: string, status: Record<string, unknown>): Promise<void> {
    const r = await this.api('PATCH', this.statusPath(namespace, name), { status }, 'application/merge-patch+json');
    if (r.status >= 300 && r.status !== 404) throw nodeError(`status of ${namespace}/${name}: ${r.status} ${JSON.stringify(r.json)}`);
  }

  /** Data of a Secret or ConfigMap (Secret values decoded); null when it does not exist. */
  private async objectData(kind: 'secrets' | 'configmaps', namespace: string, name: string): Promise<Record<string, Buffer> | null> {
    const r = await this.api('GET', `/api/v1/namespaces/${namespace}/${kind}/${name}`);
    if (r.status === 404) return null;
    if (r.status >= 300) throw nodeError(`read ${kind} ${namespace}/${name}: ${r.status}`);
    const data = DataSchema.parse(r.json).data ?? {};
    return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, kind === 'secrets' ? Buffer.from(v, 'base64') : Buffer.from(v, 'utf8')]));
  }

  /** Waits (retrying later) when a referenced Secret/ConfigMap is missing: throws this to say so. */
  private missing(what: string): MeshdError {
    return new MeshdError('MESHD_CONFORMANCE_NODE_WAITING', `waiting for ${what}`, { kind: 'unavailable' });
  }

  /** Writes the pod's secret and configMap volumes under `dir`; returns mountPath → directory. */
  private async materialiseVolumes(pod: Pod, dir: string): Promise<Map<string, string>> {
    const byName = new Map((pod.spec.volumes ?? []).map((v) => [v.name, v]));
    const mounts = new Map<string, string>();
    for (const c of pod.spec.containers) {
      for (const m of c.volumeMounts ?? []) {
        const v = byName.get(m.name);
        const src = v?.secret ? { kind: 'secrets' as const, name: v.secret.secretName, items: v.secret.items, optional: v.secret.optional } : v?.configMap ? { kind: 'configmaps' as const, name: v.configMap.name, items: v.configMap.items, optional: v.configMap.optional } : null;
        if (!src) continue;
        const data = await this.objectData(src.kind, pod.metadata.namespace, src.name);
        if (data === null && src.optional !== true) throw this.missing(`${src.kind} ${pod.metadata.namespace}/${src.name}`);
        const target = join(dir, 'volumes', m.name);
        mkdirSync(target, { recursive: true, mode: 0o700 });
        const items = src.items ?? Object.keys(data ?? {}).map((k) => ({ key: k, path: k }));
        for (const it of items) {
          const value = data?.[it.key];
          if (value === undefined) throw this.missing(`key ${it.key} of ${src.kind} ${pod.metadata.namespace}/${src.name}`);
          const file = join(target, it.path);
          if (!file.startsWith(`${target}/`)) throw nodeError(`volume ${m.name} of ${pod.metadata.namespace}/${pod.metadata.name}: item path ${it.path} leaves the volume`);
          mkdirSync(dirname(file), { recursive: true });
          writeFileSync(file, value, { mode: 0o600 });
        }
        mounts.set(m.mountPath, target);
      }
    }
    return mounts;
  }

  private fieldRef(pod: Pod, ip: string, path: string): string {
    const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
    if (label) return pod.metadata.labels?.[label[1] ?? ''] ?? '';
    switch (path) {
      case 'metadata.name': return pod.metadata.name;
      case 'metadata.namespace': return pod.metadata.namespace;
      case 'metadata.uid': return pod.metadata.uid;
      case 'spec.nodeName': return this.o.nodeName;
      case 'spec.serviceAccountName': return pod.spec.serviceAccountName ?? 'default';
      case 'status.podIP':
      case 'status.podIPs': return ip;
      case 'status.hostIP':
      case 'status.hostIPs': return this.nodeIP;
      default: throw nodeError(`${pod.metadata.namespace}/${pod.metadata.name}: fieldRef ${path} is not supported by this test node`);
    }
  }

  private async containerEnv(pod: Pod, c: Container, ip: string, mounts: Map<string, string>): Promise<Record<string, string>> {
    const rewrite = (v: string): string => {
      for (const [mountPath, dir] of mounts) if (v === mountPath || v.startsWith(`${mountPath}/`)) return dir + v.slice(mountPath.length);
      return v;
    };
    const env: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOSTNAME: pod.metadata.name };
    for (const e of c.env ?? []) {
      if (e.value !== undefined) env[e.name] = rewrite(e.value);
      else if (e.valueFrom?.fieldRef) env[e.name] = this.fieldRef(pod, ip, e.valueFrom.fieldRef.fieldPath);
      else if (e.valueFrom?.secretKeyRef || e.valueFrom?.configMapKeyRef) {
        const ref = e.valueFrom.secretKeyRef ?? e.valueFrom.configMapKeyRef;
        const kind = e.valueFrom.secretKeyRef ? 'secrets' : 'configmaps';
        if (!ref) continue;
        const data = await this.objectData(kind, pod.metadata.namespace, ref.name);
        const v = data?.[ref.key];
        if (v === undefined) {
          if (ref.optional === true) continue;
          throw this.missing(`key ${ref.key} of ${kind} ${pod.metadata.namespace}/${ref.name}`);
        }
        env[e.name] = v.toString('utf8');
      } else env[e.name] = '';
    }
    return env;
  }

  private async run(pod: Pod): Promise<void> {
    const { namespace, name, uid } = pod.metadata;
    const key = `${namespace}/${name}`;
    if (this.closed || this.runs.has(uid) || this.refusedPods.has(uid)) return;
    // Refuse before making anything: every image must stand for a binary here.
    const unknown = pod.spec.containers.find((c) => this.o.images[c.image] === undefined);
    if (unknown) {
      const err = new ImageRefused(unknown.image);
      this.refused.add(unknown.image);
      this.refusedPods.add(uid);
      this.log(`refusing ${key}: ${err.message}`);
      await this.patchStatus(namespace, name, {
        phase: 'Pending',
        conditions: [{ type: 'PodScheduled', status: 'True' }, { type: 'Ready', status: 'False', reason: 'ContainersNotReady', message: err.message }],
        containerStatuses: pod.spec.containers.map((c) => ({ name: c.name, image: c.image, imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ErrImageNeverPull', message: this.o.images[c.image] === undefined ? err.message : 'another container of the pod is refused' } } })),
      });
      return;
    }
    const dir = join(this.o.logDir, `${namespace}_${name}_${uid.slice(0, 8)}`);
    mkdirSync(dir, { recursive: true });
    let mounts: Map<string, string>;
    try {
      mounts = await this.materialiseVolumes(pod, dir);
    } catch (e) {
      if (e instanceof MeshdError && e.code === 'MESHD_CONFORMANCE_NODE_WAITING') {
        this.log(`${key}: ${e.message}`);
        this.retryLater(pod);
        return;
      }
      throw e;
    }
    const sandbox = new Sandbox('cn');
    const run: PodRun = { key, uid, namespace, name, sandbox, att: null, ip: '', dir, containers: [], ready: false, stopping: false };
    this.runs.set(uid, run);
    try {
      const list = this.conflist();
      const ns = await sandbox.netns('p');
      const att: Attachment = { containerId: `cn-${uid}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0', args: { K8S_POD_NAMESPACE: namespace, K8S_POD_NAME: name, K8S_POD_UID: uid } };
      // Set before ADD: a failed ADD is followed by DEL (the CNI spec's rule), which undoes what it made.
      run.att = att;
      let res: Awaited<ReturnType<CniRuntime['addList']>>;
      try {
        res = await this.sandboxSlot(() => this.runtime.addList(list, att));
      } catch (e) {
        // As kubelet does with a failed sandbox: tear it down and try again later (the agent may be slow to answer under load).
        throw this.missing(`a network (CNI ADD failed: ${e instanceof Error ? e.message.trim().split('\n')[0] : String(e)})`);
      }
      run.ip = firstAddress(res).split('/')[0] ?? '';
      if (run.ip === '') throw nodeError(`CNI ADD of ${key} returned no address`);
      for (const c of pod.spec.containers) {
        const env = await this.containerEnv(pod, c, run.ip, mounts);
        const rewrite = (v: string): string => {
          for (const [mountPath, d] of mounts) if (v === mountPath || v.startsWith(`${mountPath}/`)) return d + v.slice(mountPath.length);
          return v;
        };
        // $(VAR) references in command/args expand from the container's env, as kubelet does.
        const expand = (v: string): string => rewrite(v.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, n: string) => env[n] ?? m));
        const bin = this.o.images[c.image] ?? '';
        const argv = [...(c.command ?? []).slice(1), ...(c.args ?? [])].map(expand);
        const ports = (c.ports ?? []).filter((p) => p.protocol !== 'SCTP').map((p) => ({ port: p.containerPort, udp: p.protocol === 'UDP' }));
        const rc: RunningContainer = { name: c.name, image: c.image, bin, argv, env, ports, child: null, restarts: 0, startedAt: new Date().toISOString() };
        run.containers.push(rc);
        this.startContainer(run, rc);
      }
      this.log(`running ${key} at ${run.ip}`);
      await this.patchStatus(namespace, name, this.status(run));
      void this.watchReady(run);
    } catch (e) {
      const waiting = e instanceof MeshdError && e.code === 'MESHD_CONFORMANCE_NODE_WAITING';
      if (!waiting) await this.teardown(uid);
      else await this.teardown(uid).catch((te: unknown) => this.log(`${key}: ${te instanceof Error ? te.message : String(te)}`));
      if (waiting) {
        this.log(`${key}: ${e.message}`);
        this.retryLater(pod);
        return;
      }
      throw e;
    }
  }

  /**
   * Runs one CNI ADD at a time, as kubelet's sandbox creation is paced: two dozen concurrent ADDs on a loaded
   * machine each wait on the agent (in this process) until they all time out, and the suite's setup with them.
   */
  private sandboxSlot<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.addQueue.then(fn);
    this.addQueue = next.then(() => undefined, () => undefined);
    return next;
  }

  private retryLater(pod: Pod): void {
    const uid = pod.metadata.uid;
    if (this.closed || this.retry.has(uid)) return;
    // Kubelet's way: a growing delay (1 s doubling to 30 s, with jitter), so that two dozen pods retrying at once
    // do not keep a loaded machine (and the agent that must answer their CNI ADDs) busy with retries alone.
    const attempt = this.attempts.get(uid) ?? 0;
    this.attempts.set(uid, attempt + 1);
    const delay = Math.min(30_000, 1_000 * 2 ** attempt) * (0.75 + Math.random() / 2);
    this.retry.set(uid, setTimeout(() => {
      this.retry.delete(uid);
      this.enqueue(uid, async () => {
        // Only if the pod is still there and still bound here.
        const r = await this.api('GET', `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`).catch((e: unknown) => {
          this.failed(pod, 'reading the pod', e);
          return null;
        });
        if (r === null) return;
        const cur = r.status === 200 ? this.parsePod(r.json) : null;
        if (!cur || cur.metadata.uid !== uid || deleting(cur)) return;
        const node = cur.spec.nodeName ?? '';
        if (node === '') await this.bind(cur).catch((e: unknown) => this.failed(cur, 'bind', e));
        else if (node === this.o.nodeName) await this.run(cur).catch((e: unknown) => this.failed(cur, 'run', e));
      });
    }, delay));
  }

  private conflist(): Conflist {
    const ConflistSchema = z.object({ cniVersion: z.string(), name: z.string(), plugins: z.array(z.object({ type: z.string() }).passthrough()).min(1) });
    return ConflistSchema.parse(JSON.parse(readFileSync(join(this.o.cniConfDir, CONFLIST_NAME), 'utf8')));
  }

  /** Starts (or restarts: restartPolicy Always, 1 s back-off) one container's process inside the pod's namespace. */
  private startContainer(run: PodRun, c: RunningContainer): void {
    pdeathsig ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' }).status === 0;
    const netnsName = (run.att?.netns ?? '').split('/').pop() ?? '';
    const cmd = ['ip', 'netns', 'exec', netnsName, c.bin, ...c.argv];
    const [file, args] = pdeathsig ? ['setpriv', ['--pdeathsig', 'KILL', '--', ...cmd]] : [cmd[0] ?? 'ip', cmd.slice(1)];
    const fd = openSync(join(run.dir, `${c.name}.log`), 'a');
    try {
      // ip netns exec and setpriv exec in place: the child's pid is the container process's own.
      c.child = spawn(file, args, { stdio: ['ignore', fd, fd], env: c.env });
    } finally {
      closeSync(fd);
    }
    c.startedAt = new Date().toISOString();
    const child = c.child;
    child.on('error', () => undefined); // reported through the exit below and the log
    child.on('exit', (code, signal) => {
      if (run.stopping || this.closed) return;
      this.log(`${run.key}/${c.name} exited (${code ?? signal}); restarting in 1 s`);
      run.ready = false;
      void this.patchStatus(run.namespace, run.name, this.status(run)).catch(() => undefined);
      setTimeout(() => {
        if (run.stopping || this.closed) return;
        c.restarts += 1;
        this.startContainer(run, c);
        void this.watchReady(run);
      }, 1_000);
    });
  }

  private isReady(run: PodRun): boolean {
    return run.containers.every((c) => {
      const pid = c.child?.pid;
      if (pid === undefined || c.child?.exitCode !== null || c.child.signalCode !== null) return false;
      const b = boundPorts(pid);
      if (c.ports.length === 0) return b.tcp.size > 0 || b.udp.size > 0;
      return c.ports.every((p) => (p.udp ? b.udp : b.tcp).has(p.port));
    });
  }

  /** Polls until every container is ready, then reports the pod Ready. */
  private async watchReady(run: PodRun): Promise<void> {
    while (!run.stopping && !this.closed && !run.ready) {
      if (this.isReady(run)) {
        run.ready = true;
        this.log(`${run.key} ready`);
        await this.patchStatus(run.namespace, run.name, this.status(run)).catch((e: unknown) => this.log(String(e)));
        return;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private status(run: PodRun): Record<string, unknown> {
    const now = new Date().toISOString();
    const ready = run.ready ? 'True' : 'False';
    return {
      phase: 'Running',
      hostIP: this.nodeIP,
      hostIPs: [{ ip: this.nodeIP }],
      podIP: run.ip,
      podIPs: [{ ip: run.ip }],
      startTime: run.containers[0]?.startedAt ?? now,
      conditions: [
        { type: 'PodScheduled', status: 'True', lastTransitionTime: now },
        { type: 'Initialized', status: 'True', lastTransitionTime: now },
        { type: 'ContainersReady', status: ready, lastTransitionTime: now },
        { type: 'Ready', status: ready, lastTransitionTime: now },
      ],
      containerStatuses: run.containers.map((c) => ({
        name: c.name,
        image: c.image,
        imageID: `file://${c.bin}`,
        containerID: `meshd-test://${run.uid}-${c.name}`,
        ready: run.ready,
        started: true,
        restartCount: c.restarts,
        state: { running: { startedAt: c.startedAt } },
      })),
    };
  }

  /** Stops the pod's processes, CNI DEL, removes its namespace and files; idempotent, every step tried. */
  private async teardown(uid: string): Promise<void> {
    this.refusedPods.delete(uid);
    const t = this.retry.get(uid);
    if (t) clearTimeout(t);
    this.retry.delete(uid);
    const run = this.runs.get(uid);
    if (!run) return;
    run.stopping = true;
    const failures: unknown[] = [];
    await Promise.all(run.containers.map(async (c) => {
      const child = c.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
      await exited;
      clearTimeout(timer);
    }));
    if (run.att) {
      await this.runtime.delList(this.conflist(), run.att).catch((e: unknown) => failures.push(nodeError(`CNI DEL of ${run.key}`, e)));
    }
    await run.sandbox.cleanup().catch((e: unknown) => failures.push(e));
    rmSync(join(run.dir, 'volumes'), { recursive: true, force: true });
    this.runs.delete(uid);
    this.log(`stopped ${run.key}`);
    if (failures.length > 0) throw failures[0];
  }

  /**
   * Stops watching, tears every pod down (each bounded to `stepMs`; problems
   * are logged, not thrown: a cleanup must finish) and removes the Node object
   * if this node made it. Pod objects stay for the cluster's own teardown.
   */
  async close(stepMs = 20_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    await this.watching?.catch(() => undefined);
    for (const t of this.retry.values()) clearTimeout(t);
    this.retry.clear();
    await Promise.allSettled([...this.chains.values()]);
    for (const run of [...this.runs.values()]) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([this.teardown(run.uid), new Promise((_, reject) => (timer = setTimeout(() => reject(nodeError(`teardown of ${run.key} timed out after ${stepMs} ms`)), stepMs)))]);
      } catch (e) {
        this.log(`cleanup of ${run.key}: ${e instanceof Error ? e.message : String(e)}`);
        for (const c of run.containers) c.child?.kill('SIGKILL');
        await run.sandbox.cleanup().catch(() => undefined); // the namespace must not outlive the run; the failure is logged above
        this.runs.delete(run.uid);
      } finally {
        clearTimeout(timer);
      }
    }
    if (this.nodeCreated) await this.api('DELETE', `/api/v1/nodes/${this.o.nodeName}`).catch(() => undefined); // the cluster goes next anyway
    await this.dispatcher.close();
  }
}
