/**
 * The agent's one object for L7: the node's Envoy, the xDS server that
 * configures it, the access-log receiver, the proxy ports and the policy
 * routing that delivers redirected connections to Envoy.
 *
 *   const proxy = await ProxyManager.start({ nodeName, stateDir, portRange: [10000, 10999], xdsMode: 'delta', log });
 *   const dp = await EndpointManager.open({ pinDir, proxyPort: (k, d) => proxy.proxyPort(k, d) });
 *   const r = await proxy.apply({ endpoints, identityIps });   // resolves once Envoy ACKed
 *   for (const ep of changed) dp.updatePolicy(ep);               // only then the datapath redirects
 *   await proxy.stop();
 *
 * apply() serialises: translate → snapshot (a new version only when the
 * content changed) → wait for Envoy's ACK. If Envoy rejects the snapshot
 * (NACK) apply() rejects with a ProxyError `MESHD_PROXY_NACKED`, and the
 * server goes back to serving the last ACKed content, so Envoy keeps it and a
 * restarted Envoy receives it too; the caller must then not program the new
 * REDIRECT entries (they could point at a listener that does not exist).
 * Which listeners, endpoints and policies the rejection concerns is known from
 * the snapshots themselves (what changed since the last ACKed one); Envoy's
 * message is carried along for people to read and never parsed.
 *
 * If Envoy does not answer in time (ACK_TIMEOUT: hung, stopped, overloaded)
 * apply() rejects with `MESHD_PROXY_ACK_TIMEOUT`; the new snapshot stays
 * served, since Envoy may still apply it. When Envoy ACKs it later, the
 * `onAccepted` listeners are told, so the caller can write what it held back.
 *
 *   proxy.onAccepted(() => agent.reconcile());   // a late ACK: hold nothing back any longer
 *
 * Envoy's life is not the agent's (supervisor.ts): `replicas` Envoys run
 * detached, active-active on the same proxy ports (steering.ts), each with
 * its own xDS node id (`<nodeName>/<instance>`) in one snapshot group. An
 * apply() waits for the ACK of every live instance. A new agent on the same
 * state directory adopts the running Envoys that run the same binary and
 * bootstrap; before anything else it serves the last ACKed snapshot again
 * (`proxy-snapshot.json`, same version, same content), so the Envoys'
 * reconnecting xDS streams change nothing, and an Envoy that starts before
 * the agent's first apply gets the last policy, not an empty one.
 *
 *   await proxy.restart();   // planned replacement: new Envoys configured first, old ones drained
 *   await proxy.detach();    // the agent leaves, the Envoys keep serving (SIGTERM, upgrade)
 *
 * A crashed Envoy is replaced by the supervisor; with several replicas the
 * others take the new connections meanwhile. stop() drains and stops every
 * Envoy and the servers and keeps the policy routing: the datapath keeps
 * enforcing, and redirected flows fail closed until an Envoy is back (no
 * listener = PROXY_UNAVAILABLE drop).
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { buildBootstrap } from '../../envoy/bootstrap.js';
import { findEnvoyProcesses, stopProcesses } from '../../envoy/orphans.js';
import { isXdsError, type NodeStatus, XdsError, XdsServer, type XdsLogger } from '../../xds/index.js';
import { readStateFile, warnCorrupt, writeStateFile } from '../util/state-file.js';
import type { Direction, L7Kind, PolicyEntry } from '../policy/types.js';
import { MeshdError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { KafkaProcessor } from '../kafka/processor.js';
import { AccessLogServer, type L7FlowRecord } from './access-log-server.js';
import { defaultPolicyRouting, ensurePolicyRouting, type PolicyRoutingOptions } from './policy-routing.js';
import { ProxyPorts } from './proxy-ports.js';
import { resolveSdsSecrets, type SecretData, withoutUnusable } from './sds.js';
import { enableRequestMigration, ProxySteering, type SteeringStatus, withReusePort } from './steering.js';
import { adminRequest } from './supervisor-process.js';
import { ProxySupervisor, type SupervisorStatus } from './supervisor.js';
import { type L7Endpoint, type Redirect, SUPPORTED_L7, type TranslateOutput, translateL7 } from './translate.js';
import type { GatewayResources } from '../gateway/translate.js';
import type { UpstreamHttpOptions } from './cluster.js';

export interface ProxyManagerOptions {
  nodeName: string;
  stateDir: string;
  portRange: readonly [number, number];
  xdsMode: 'sotw' | 'delta';
  envoyBinaryPath?: string;
  log: Logger;
  /** How long apply() waits for Envoy's ACK (default 15 s). */
  ackTimeoutMs?: number;
  /** Policy routing for the proxy mark (default: fwmark 0xb00/0xf00 → table 2004, priority 9). Tests use their own table. */
  routing?: PolicyRoutingOptions;
  /** Seconds Envoy drains listeners on stop and on LDS changes (default 2). */
  drainTimeS?: number;
  /** Envoy worker threads (default 2). */
  concurrency?: number;
  /** Envoys active-active behind the same proxy ports (proxy.replicas, default 1). */
  replicas?: number;
  /** After a replaced Envoy's drain: how long its open connections (TCP, Kafka) may still take (default 10 s). */
  drainTimeoutMs?: number;
  /** stop() leaves the Envoys running for the next agent (as detach()); the `meshd agent` process's choice. */
  keepEnvoysOnStop?: boolean;
  /**
   * bpffs directory of the datapath's pins (`<bpf.root>/meshd`): the steering maps live there
   * (steering.ts). Without it, or when steering cannot load, the kernel's listener lookup steers.
   */
  pinDir?: string;
  /**
   * Envoy's HTTP access log to this process (gRPC ALS), the source of the L7 flows (default true).
   * It costs Envoy and the agent CPU on every request; the agent turns it off when nothing reads it
   * (hubble.enabled=false).
   */
  accessLog?: boolean;
  /** Upstream HTTP idle timeout and retries (envoy.idleTimeoutDurationSeconds, envoy.httpRetryCount; default Cilium's 60 s, 3). */
  upstream?: UpstreamHttpOptions;
}

/** The single-Envoy view of the supervisor (meshd status), plus every instance and how new connections reach them. */
export type EnvoyStatus = SupervisorStatus & { steering: SteeringStatus | null };

export interface ProxyApplyInput {
  /** Every local endpoint: its policy and addresses. */
  endpoints: L7Endpoint[];
  /** The ipcache's identity → addresses (prefixes). */
  identityIps: ReadonlyMap<number, readonly string[]>;
  /** Secret data TLS interception may name ("namespace/name" → key → PEM); see sds.ts. */
  secrets?: SecretData;
}

export interface ProxyApplyResult {
  /** Snapshot version Envoy ACKed. */
  version: string;
  redirects: Redirect[];
  unsupported: TranslateOutput['unsupported'];
  /**
   * TLS Secrets that are missing or broken (MESHD_PROXY_SECRET_MISSING / _INVALID, naming the field,
   * the Secret and the policies): each kept its last good version, or, without one, the chains that
   * name it were left out (their connections fail closed). Everything else was applied.
   */
  secretProblems: Array<{ code: string; message: string }>;
}

export type ProxyErrorCode = 'MESHD_PROXY_NACKED' | 'MESHD_PROXY_ACK_TIMEOUT' | 'MESHD_PROXY_STOPPED';

/** What a rejected (or unanswered) snapshot changed against the last one Envoy ACKed. */
export interface ProxyChange {
  /** Listeners added or changed. */
  listeners: string[];
  /** Endpoints whose filter chains were added or changed in those listeners. */
  endpoints: string[];
  /** Policies behind the rules that changed in those chains. */
  policies: string[];
}

export class ProxyError extends MeshdError {
  constructor(
    override readonly code: ProxyErrorCode,
    message: string,
    readonly details: {
      /** The snapshot version concerned. */
      version?: string;
      /** Envoy's own message for a rejection (NACK): for people, never parsed. */
      envoyMessage?: string;
      change?: ProxyChange;
      cause?: unknown;
    } = {},
  ) {
    super(code, message, { kind: code === 'MESHD_PROXY_NACKED' ? 'invalid' : 'unavailable', cause: details.cause });
  }

  get version(): string | undefined {
    return this.details.version;
  }

  get envoyMessage(): string | undefined {
    return this.details.envoyMessage;
  }

  /** Policies whose rules changed in the listeners Envoy rejected (for the policies' status). */
  get policies(): readonly string[] {
    return this.details.change?.policies ?? [];
  }
}

interface Served {
  version: string;
  hash: string;
  out: TranslateOutput;
  /** The input it was translated from (for what a rejection concerns). */
  input: ProxyApplyInput;
}

/** The last failure to get a snapshot applied, for status. */
export interface ProxyFailure {
  code: ProxyErrorCode;
  version: string;
  message: string;
  /** Envoy's message (NACK only). */
  envoyMessage: string | null;
  change: ProxyChange;
  at: string;
}

function xdsLogger(log: Logger): XdsLogger {
  return { info: (m, f) => log.debug(m, f), warn: (m, f) => log.warn(m, f), error: (m, f) => log.error(m, f) };
}

type Json = Record<string, unknown>;

/** The last ACKed snapshot, kept for the next agent (what it serves before its first apply). */
const servedFileSchema = z.strictObject({
  version: z.literal(1),
  seq: z.number().int().nonnegative(),
  snapshotVersion: z.string().min(1),
  listeners: z.array(z.record(z.string(), z.unknown())),
  clusters: z.array(z.record(z.string(), z.unknown())),
  /** SDS secrets (TLS interception): a restarted agent's Envoy gets them from the start. Absent in files of older agents. */
  secrets: z.array(z.record(z.string(), z.unknown())).optional(),
});

const DEFAULT_ACK_TIMEOUT_MS = 15_000;
const EMPTY: TranslateOutput = { listeners: [], clusters: [], redirects: [], unsupported: [] };

const named = (x: unknown): x is Json & { name: string } => typeof x === 'object' && x !== null && 'name' in x && typeof x.name === 'string';
const chainsOf = (l: Json): Array<Json & { name: string }> => (Array.isArray(l.filter_chains) ? l.filter_chains.filter(named) : []);

/**
 * The endpoints a filter chain enforces rules of, with the direction: its own
 * (`<namespace>/<name>/<direction>…`, the translator's chain names) and, for an
 * egress chain toward a local destination (`…/egress/to/<namespace>/<name>`),
 * the destination's ingress rules too.
 */
function chainSubjects(chain: string): Array<{ endpointId: string; direction: Direction }> {
  const [ns, name, direction, to, dns, dname] = chain.split('/');
  if (!ns || !name || (direction !== 'ingress' && direction !== 'egress')) return [];
  const out: Array<{ endpointId: string; direction: Direction }> = [{ endpointId: `${ns}/${name}`, direction }];
  if (direction === 'egress' && to === 'to' && dns && dname) out.push({ endpointId: `${dns}/${dname}`, direction: 'ingress' });
  return out;
}

const isL7Redirect = (e: PolicyEntry): boolean => e.verdict === 'REDIRECT' && e.l7 !== undefined && SUPPORTED_L7.has(e.l7.kind);

/**
 * What `next` changes against `prev` (the last snapshot Envoy ACKed; null
 * before the first ACK): the listeners added or changed, the endpoints whose
 * chains in them were added or changed, and the policies behind the L7 rows
 * of those chains that are new since `prev` (all their L7 rows when none is
 * new, e.g. chains that changed only because addresses did).
 */
export function snapshotChange(prev: { out: TranslateOutput; input: ProxyApplyInput } | null, next: { out: TranslateOutput; input: ProxyApplyInput }): ProxyChange {
  const prevListeners = new Map((prev?.out.listeners ?? []).filter(named).map((l) => [l.name, l]));
  const listeners: string[] = [];
  const subjects = new Map<string, { endpointId: string; direction: Direction }>();
  for (const l of next.out.listeners.filter(named)) {
    const before = prevListeners.get(l.name);
    if (before && JSON.stringify(before) === JSON.stringify(l)) continue;
    listeners.push(l.name);
    const prevChains = new Map((before ? chainsOf(before) : []).map((c) => [c.name, JSON.stringify(c)]));
    const chains = chainsOf(l);
    const changed = chains.filter((c) => prevChains.get(c.name) !== JSON.stringify(c));
    // A listener that changed outside its chains (its port, say): every chain in it is concerned.
    for (const c of changed.length > 0 ? changed : chains) for (const s of chainSubjects(c.name)) subjects.set(`${s.endpointId} ${s.direction}`, s);
  }
  const rows = (input: ProxyApplyInput | undefined, s: { endpointId: string; direction: Direction }): PolicyEntry[] =>
    (input?.endpoints.find((e) => e.policy.endpointId === s.endpointId)?.policy[s.direction].entries ?? []).filter(isL7Redirect);
  const now = [...subjects.values()].map((s) => ({ had: new Set(rows(prev?.input, s).map((e) => JSON.stringify(e))), rows: rows(next.input, s) }));
  const fresh = now.flatMap((x) => x.rows.filter((e) => !x.had.has(JSON.stringify(e))));
  const policies = new Set((fresh.length > 0 ? fresh : now.flatMap((x) => x.rows)).flatMap((e) => e.derivedFrom));
  return { listeners: listeners.sort(), endpoints: [...new Set([...subjects.values()].map((s) => s.endpointId))].sort(), policies: [...policies].sort() };
}

function contentHash(out: TranslateOutput): string {
  return createHash('sha256').update(JSON.stringify({ l: out.listeners, c: out.clusters, s: out.secrets ?? [] })).digest('hex');
}

/**
 * A signal aborted when either source aborts, released by done(). Not
 * AbortSignal.any(): on Node 20 a signal it composes stays referenced by
 * long-lived sources (the manager's stop signal, an Envoy's gone signal)
 * with everything its listeners hold — one per apply, a leak.
 */
function eitherSignal(a: AbortSignal, b: AbortSignal): { signal: AbortSignal; done: () => void } {
  const ac = new AbortController();
  const abort = () => ac.abort();
  if (a.aborted || b.aborted) ac.abort();
  a.addEventListener('abort', abort, { once: true });
  b.addEventListener('abort', abort, { once: true });
  return {
    signal: ac.signal,
    done: () => {
      a.removeEventListener('abort', abort);
      b.removeEventListener('abort', abort);
    },
  };
}

export class ProxyManager {
  private seq = 0;
  /** Last snapshot Envoy ACKed (what is served after a NACK). */
  private good: Served | null = null;
  /** Last snapshot set on the server. */
  private current: Served | null = null;
  /** The last snapshot Envoy rejected or did not ACK in time, while nothing newer was ACKed. */
  private failure: (ProxyFailure & { hash: string }) | null = null;
  private readonly ackedListeners = new Map<string, string>();
  private readonly acceptedListeners = new Set<(version: string) => void>();
  /** Waits on for the ACK of a snapshot whose apply() timed out; aborted by the next apply() and stop(). */
  private lateAck: AbortController | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private stopping: Promise<void> | null = null;
  /** Aborted by stop() and detach(): an apply waiting for an Envoy's ACK gives up (MESHD_PROXY_STOPPED). */
  private readonly stopSignal = new AbortController();
  /** The listener names when the steering was last written (a new listener port needs its sockets steered too). */
  private steeredListeners = '';

  private constructor(
    private readonly o: ProxyManagerOptions,
    private readonly xds: XdsServer,
    private readonly als: AccessLogServer,
    private readonly envoy: ProxySupervisor,
    private readonly ports: ProxyPorts,
    /** Ingress Kafka rules: the Envoy listener's ext_proc filter asks it (src/kafka/processor.ts). */
    private readonly kafka: { socketPath: string; processor: KafkaProcessor | null },
    private readonly steering: ProxySteering | null,
  ) {}

  static async start(o: ProxyManagerOptions): Promise<ProxyManager> {
    mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
    const log = o.log.child({ component: 'proxy' });
    const ports = ProxyPorts.open({ stateFile: join(o.stateDir, 'proxy-ports.json'), range: o.portRange });
    await ensurePolicyRouting(o.routing ?? defaultPolicyRouting);
    if (!enableRequestMigration()) log.warn('net.ipv4.tcp_migrate_req is not available: connections queued on a closing Envoy listener are reset');
    // Every instance is `<nodeName>/<id>` for ACKs, all share the node's one snapshot.
    const xds = new XdsServer({ log: xdsLogger(log), nodeGroup: (n) => (n.id.startsWith(`${o.nodeName}/`) ? o.nodeName : n.id) });
    const xdsSock = join(o.stateDir, 'xds.sock');
    const alsSock = join(o.stateDir, 'als.sock');
    const als = new AccessLogServer({ socketPath: alsSock });
    const workDir = join(o.stateDir, 'envoy');
    const instance = (id: string) => {
      const nodeId = `${o.nodeName}/${id}`;
      const adminSocket = join(workDir, `${id}-admin.sock`);
      const bootstrap = buildBootstrap({ nodeId, xds: { unix: xdsSock }, xdsMode: o.xdsMode, admin: { unix: adminSocket }, als: { unix: alsSock } });
      return { nodeId, adminSocket, bootstrap };
    };
    let steering: ProxySteering | null = null;
    if (o.pinDir !== undefined) {
      try {
        steering = await ProxySteering.open({ pinDir: o.pinDir });
      } catch (e) {
        log.warn('proxy steering unavailable: the kernel\'s listener lookup steers new connections', { err: e instanceof Error ? e.message : String(e) });
      }
    }
    let m: ProxyManager | null = null;
    const envoy = new ProxySupervisor({
      workDir,
      replicas: o.replicas ?? 1,
      instance,
      configured: (nodeId, signal) => (m ? m.configured(nodeId, signal) : Promise.reject(new Error('not started'))),
      ...(o.envoyBinaryPath !== undefined ? { binaryPath: o.envoyBinaryPath } : {}),
      drainTimeS: o.drainTimeS ?? 2,
      ...(o.drainTimeoutMs !== undefined ? { drainTimeoutMs: o.drainTimeoutMs } : {}),
      concurrency: o.concurrency ?? 2,
      backoff: { initialMs: 200, maxMs: 10_000 },
      log: (level, msg, fields) => log[level](msg, fields),
      ...(steering
        ? {
            steer: (live: ReadonlyArray<{ id: string; pid: number }>) => {
              mm.steeredListeners = mm.listenerNames();
              steering.update(live, ports.list().map((p) => p.port));
            },
            unsteer: (id: string) => steering.remove(id),
          }
        : {}),
    });
    m = new ProxyManager(o, xds, als, envoy, ports, { socketPath: join(o.stateDir, 'kafka.sock'), processor: null }, steering);
    const mm: ProxyManager = m;
    envoy.on('exit', (e: { id: string; pid: number }) => {
      if (!mm.stopping) log.warn('envoy exited', e);
    });
    envoy.on('live', (r: { id: string; pid: number }) => log.info('envoy live', { id: r.id, pid: r.pid }));
    // Every replacement and crash brings a new xDS node id: the old one's ACK status would stay forever.
    envoy.on('gone', (r: { nodeId: string }) => xds.forgetNode(r.nodeId));
    try {
      // An Envoy of the single-Envoy layout (one bootstrap.json) still holds the proxy ports: stop it first.
      const stale = findEnvoyProcesses(join(workDir, 'bootstrap.json'));
      if (stale.length > 0) {
        log.warn('stopping Envoy left by a previous agent', { pids: stale });
        await stopProcesses(stale);
      }
      await xds.listen(`unix:${xdsSock}`);
      await als.listen();
      m.kafka.processor = await KafkaProcessor.start({ socketPath: m.kafka.socketPath, log: log.child({ component: 'kafka' }) });
      // The last ACKed snapshot, same version: adopted Envoys see no change; new ones start with the last policy.
      // Without one, an empty snapshot: Envoy initialises at once instead of waiting out its fetch timeout.
      if (!m.republishLast()) m.publish(EMPTY, { endpoints: [], identityIps: new Map() });
      await envoy.start();
    } catch (e) {
      await m.stop();
      throw e;
    }
    return m;
  }

  private listenerNames(): string {
    return (this.current?.out.listeners ?? [])
      .filter(named)
      .map((l) => l.name)
      .sort()
      .join(',');
  }

  private get servedFile(): string {
    return join(this.o.stateDir, 'proxy-snapshot.json');
  }

  /** Serves the snapshot a previous agent recorded as ACKed; false when there is none (or it is unusable). */
  private republishLast(): boolean {
    const r = readStateFile(this.servedFile, servedFileSchema);
    if (r.state === 'corrupt') warnCorrupt(r.problem);
    if (r.state !== 'ok') return false;
    const secrets = r.data.secrets ?? [];
    const out: TranslateOutput = { listeners: r.data.listeners, clusters: r.data.clusters, redirects: [], unsupported: [], ...(secrets.length > 0 ? { secrets } : {}) };
    const s: Served = { version: r.data.snapshotVersion, hash: contentHash(out), out, input: { endpoints: [], identityIps: new Map() } };
    try {
      this.xds.setSnapshot(this.o.nodeName, { version: s.version, resources: { listeners: out.listeners, clusters: out.clusters, secrets } });
    } catch (e) {
      this.o.log.warn('the recorded proxy snapshot is not valid any more; starting empty', { file: this.servedFile, err: e instanceof Error ? e.message : String(e) });
      return false;
    }
    this.seq = r.data.seq;
    this.current = s;
    this.good = s;
    return true;
  }

  /** Resolves once instance `nodeId` ACKed what is served now (the supervisor's make-before-break). */
  private configured(nodeId: string, signal: AbortSignal): Promise<void> {
    const version = this.current?.version;
    if (version === undefined) return Promise.resolve();
    return this.xds.waitForAck(nodeId, version, { signal });
  }

  /**
   * Waits for every live Envoy to ACK `version`. An instance that exits
   * meanwhile does not count; with none live, waits for one to become live
   * (it ACKs the current snapshot before it does).
   */
  private async waitForAcks(version: string, opts: { timeoutMs?: number; signal?: AbortSignal }): Promise<void> {
    const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
    for (;;) {
      const live = this.envoy.live();
      const left = deadline - Date.now();
      if (live.length === 0) {
        const [a, b] = [opts.signal, Number.isFinite(left) ? AbortSignal.timeout(Math.max(1, left)) : undefined].filter((x): x is AbortSignal => x !== undefined);
        const either = a && b ? eitherSignal(a, b) : { signal: a, done: () => undefined };
        try {
          await once(this.envoy, 'live', either.signal ? { signal: either.signal } : {});
        } catch (e) {
          if (opts.signal?.aborted) throw new XdsError('MESHD_XDS_ABORTED', `waiting for snapshot ${version}: aborted`);
          throw new XdsError('MESHD_XDS_ACK_TIMEOUT', `no Envoy was live to ACK snapshot ${version}: ${e instanceof Error ? e.message : String(e)}`);
        } finally {
          either.done();
        }
        continue;
      }
      const results = await Promise.allSettled(
        live.map((rec) => {
          const gone = this.envoy.goneSignal(rec.id);
          const signal = opts.signal ? eitherSignal(opts.signal, gone) : { signal: gone, done: () => undefined };
          return this.xds
            .waitForAck(rec.nodeId, version, { signal: signal.signal, ...(Number.isFinite(left) ? { timeoutMs: Math.max(1, left) } : {}) })
            .finally(signal.done);
        }),
      );
      let anyAcked = false;
      for (const [k, r] of results.entries()) {
        const rec = live[k];
        if (r.status === 'fulfilled') anyAcked = true;
        else if (!(rec && this.envoy.goneSignal(rec.id).aborted && !opts.signal?.aborted)) throw r.reason;
      }
      if (anyAcked) return;
    }
  }

  proxyPort(kind: L7Kind, direction: Direction): number {
    return this.ports.portFor(kind, direction);
  }

  apply(input: ProxyApplyInput): Promise<ProxyApplyResult> {
    const run = this.queue.then(() => this.applyNow(input));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Calls `fn` when Envoy ACKs a snapshot after its apply() gave up waiting
   * (MESHD_PROXY_ACK_TIMEOUT): what the caller held back may now be written.
   * Returns the unsubscribe function.
   */
  onAccepted(fn: (version: string) => void): () => void {
    this.acceptedListeners.add(fn);
    return () => this.acceptedListeners.delete(fn);
  }

  private publish(out: TranslateOutput, input: ProxyApplyInput): Served {
    this.seq += 1;
    const s: Served = { version: `v${this.seq}`, hash: contentHash(out), out, input };
    const g = this.gateway;
    this.xds.setSnapshot(this.o.nodeName, { version: s.version, resources: { listeners: [...out.listeners, ...g.listeners], clusters: [...out.clusters, ...g.clusters], secrets: [...(out.secrets ?? []), ...g.secrets], routes: g.routes, endpoints: g.endpoints } });
    this.current = s;
    return s;
  }

  /** Gateway API resources (src/gateway), served in every snapshot beside the L7-policy ones. */
  private gateway: GatewayResources = { listeners: [], routes: [], clusters: [], endpoints: [], secrets: [] };

  /**
   * Serves the Gateway API's listeners, routes, clusters, endpoints and
   * secrets in the node's snapshot beside the L7-policy resources and waits
   * for every live Envoy's ACK. A NACK rejects with `MESHD_PROXY_NACKED` and
   * the previous Gateway resources are served again; an ACK timeout rejects
   * with `MESHD_PROXY_ACK_TIMEOUT` and keeps them served. The L7 policy is
   * untouched either way.
   */
  applyGateway(res: GatewayResources): Promise<{ version: string }> {
    const run = this.queue.then(async () => {
      if (this.stopping) throw new ProxyError('MESHD_PROXY_STOPPED', 'the proxy manager is stopped');
      const prev = this.gateway;
      if (this.current && JSON.stringify(prev) === JSON.stringify(res)) return { version: this.current.version };
      this.gateway = res;
      const base = this.current ?? { out: EMPTY, input: { endpoints: [], identityIps: new Map() } };
      const snap = this.publish(base.out, base.input);
      try {
        await this.waitForAcks(snap.version, { timeoutMs: this.o.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS });
      } catch (e) {
        if (!isXdsError(e, 'MESHD_XDS_NACKED')) throw new ProxyError('MESHD_PROXY_ACK_TIMEOUT', `Envoy did not ACK the Gateway configuration of snapshot ${snap.version}`, { version: snap.version, cause: e });
        this.gateway = prev;
        this.publish(base.out, base.input);
        throw new ProxyError('MESHD_PROXY_NACKED', `Envoy rejected the Gateway configuration of snapshot ${snap.version}: ${e.message}`, { version: snap.version, envoyMessage: e.message, cause: e });
      }
      return { version: snap.version };
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private accepted(s: Served): void {
    if (this.good?.version !== s.version) {
      // Mode 0600 in the 0700 state directory: the secrets carry private keys.
      writeStateFile(this.servedFile, { version: 1, seq: this.seq, snapshotVersion: s.version, listeners: s.out.listeners, clusters: s.out.clusters, secrets: s.out.secrets ?? [] });
    }
    this.good = s;
    this.failure = null;
    this.ackedListeners.clear();
    for (const l of s.out.listeners) if (named(l)) this.ackedListeners.set(l.name, s.version);
  }

  private fail(code: ProxyErrorCode, snap: Served, envoyMessage?: string, cause?: unknown): ProxyError {
    const change = snapshotChange(this.good, snap);
    const what = `snapshot ${snap.version} (listeners changed: ${change.listeners.join(', ') || 'none'})`;
    const message =
      code === 'MESHD_PROXY_NACKED'
        ? `Envoy rejected ${what}: ${envoyMessage ?? ''}`
        : `Envoy did not ACK ${what} within ${this.o.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS} ms (envoy ${this.envoy.status().state})`;
    this.failure = { code, version: snap.version, message, envoyMessage: envoyMessage ?? null, change, at: new Date().toISOString(), hash: snap.hash };
    return new ProxyError(code, message, { version: snap.version, change, ...(envoyMessage !== undefined ? { envoyMessage } : {}), cause });
  }

  private async applyNow(input: ProxyApplyInput): Promise<ProxyApplyResult> {
    if (this.stopping) throw new ProxyError('MESHD_PROXY_STOPPED', 'the proxy manager is stopped');
    this.lateAck?.abort();
    this.lateAck = null;
    const translated = translateL7({ endpoints: input.endpoints, identityIps: input.identityIps, ports: this.ports, accessLog: this.o.accessLog ?? true, kafka: { processorSocket: this.kafka.socketPath }, ...(this.o.upstream ? { upstream: this.o.upstream } : {}) });
    // Every Envoy binds each proxy port with SO_REUSEPORT: replicas and replacements share it (steering.ts).
    let out: TranslateOutput = { ...translated, listeners: withReusePort(translated.listeners) };
    // A Secret that is missing or does not parse costs only what names it: its last good version stays
    // served; one that never had a good version takes the chains that name it out (fail closed).
    let problems: ProxyApplyResult['secretProblems'] = [];
    if (out.secretRefs) {
      const r = resolveSdsSecrets(out.secretRefs, input.secrets ?? new Map(), this.good?.out.secrets ?? []);
      out = withoutUnusable({ ...out, secrets: r.secrets }, r.unusable);
      problems = r.problems.map((e) => ({ code: e.code, message: e.message }));
    }
    // Rules change without a listener change (keys name chains, not rules): they apply to the next request.
    this.kafka.processor?.setPolicies(out.kafkaPolicies ?? new Map());
    const hash = contentHash(out);
    const f = this.failure;
    if (f?.code === 'MESHD_PROXY_NACKED' && f.hash === hash) {
      // The same content Envoy rejected: do not send it again.
      throw new ProxyError('MESHD_PROXY_NACKED', f.message, { version: f.version, change: f.change, ...(f.envoyMessage !== null ? { envoyMessage: f.envoyMessage } : {}) });
    }
    const snap = this.current?.hash === hash ? { ...this.current, out, input } : this.publish(out, input);
    const log = this.o.log.child({ component: 'proxy' });
    try {
      await this.waitForAcks(snap.version, { timeoutMs: this.o.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS, signal: this.stopSignal.signal });
    } catch (e) {
      if (this.stopSignal.signal.aborted) throw new ProxyError('MESHD_PROXY_STOPPED', `the proxy manager stopped while snapshot ${snap.version} waited for Envoy`, { version: snap.version, cause: e });
      if (isXdsError(e, 'MESHD_XDS_NACKED')) {
        const err = this.fail('MESHD_PROXY_NACKED', snap, e.message, e);
        log.warn('envoy rejected the proxy configuration; the previous one stays in force', { version: snap.version, change: err.details.change, envoyMessage: e.message });
        // Serve the last good content again, so a reconnecting Envoy does not receive the rejected one.
        if (this.good) this.publish(this.good.out, this.good.input);
        else this.publish(EMPTY, { endpoints: [], identityIps: new Map() });
        throw err;
      }
      if (isXdsError(e, 'MESHD_XDS_ACK_TIMEOUT')) {
        const err = this.fail('MESHD_PROXY_ACK_TIMEOUT', snap, undefined, e);
        this.waitLate(snap);
        throw err;
      }
      throw e;
    }
    this.accepted(snap);
    // A listener on a port the steering does not know yet: its sockets join the map (until then the lookup serves it).
    if (this.steering && this.listenerNames() !== this.steeredListeners) await this.envoy.steer();
    return { version: snap.version, redirects: out.redirects, unsupported: out.unsupported, secretProblems: problems };
  }

  /** After an ACK timeout: the snapshot stays served; if Envoy ACKs it later, it is the good one and the listeners hear of it. */
  private waitLate(snap: Served): void {
    const ac = new AbortController();
    this.lateAck = ac;
    this.waitForAcks(snap.version, { signal: ac.signal }).then(
      () => {
        if (ac.signal.aborted || this.current?.version !== snap.version) return;
        this.lateAck = null;
        this.accepted(snap);
        this.o.log.child({ component: 'proxy' }).info('envoy ACKed the proxy configuration late', { version: snap.version });
        for (const fn of this.acceptedListeners) fn(snap.version);
      },
      (e: unknown) => {
        if (!isXdsError(e, 'MESHD_XDS_NACKED') || ac.signal.aborted) return;
        // Rejected after all: as for a NACK in time, the last good content is served again.
        this.lateAck = null;
        this.fail('MESHD_PROXY_NACKED', snap, e.message, e);
        if (this.good) this.publish(this.good.out, this.good.input);
        else this.publish(EMPTY, { endpoints: [], identityIps: new Map() });
      },
    );
  }

  status(): {
    envoy: EnvoyStatus;
    xds: NodeStatus | undefined;
    ports: Array<{ key: string; port: number }>;
    listeners: Array<{ name: string; port: number; endpoints: string[]; ackedVersion: string | null }>;
    /** The last rejection, while nothing newer was ACKed (`message` is Envoy's). */
    lastNack: { version: string; message: string; at: string } | null;
    /** The last failure to get a snapshot applied (NACK or ACK timeout), while nothing newer was ACKed. */
    lastError: ProxyFailure | null;
  } {
    const listeners = (this.current?.out.listeners ?? []).filter(named).map((l) => {
      const endpoints = new Set(chainsOf(l).flatMap((c) => chainSubjects(c.name).slice(0, 1).map((x) => x.endpointId)));
      return { name: l.name, port: this.ports.list().find((p) => `meshd-${p.key}` === l.name)?.port ?? 0, endpoints: [...endpoints].sort(), ackedVersion: this.ackedListeners.get(l.name) ?? null };
    });
    const f = this.failure;
    const first = this.envoy.live()[0];
    return {
      envoy: { ...this.envoy.status(), steering: this.steering?.status() ?? null },
      xds: first ? this.xds.status(first.nodeId) : undefined,
      ports: this.ports.list(),
      listeners,
      lastNack: f?.code === 'MESHD_PROXY_NACKED' ? { version: f.version, message: f.envoyMessage ?? '', at: f.at } : null,
      lastError: f ? { code: f.code, version: f.version, message: f.message, envoyMessage: f.envoyMessage, change: f.change, at: f.at } : null,
    };
  }

  /** Hears the access-log records as they arrive, a message of Envoy's at a time (the flow observer); returns the unsubscribe function. */
  onAccessLog(fn: (rs: readonly L7FlowRecord[]) => void): () => void {
    return this.als.subscribe(fn);
  }

  recentAccessLogs(): L7FlowRecord[] {
    return this.als.recent();
  }

  /** Access-log records received since start, by verdict. */
  accessLogCounts(): { forwarded: number; denied: number; error: number; malformed: number } {
    return { ...this.als.counters };
  }

  /** GET on the admin API (stats, listeners) of the oldest live Envoy, for status and tests. */
  adminRequest(path: string): Promise<{ status: number; body: string }> {
    const first = this.envoy.live()[0];
    if (!first) return Promise.reject(new ProxyError('MESHD_PROXY_STOPPED', 'no Envoy is live'));
    return adminRequest(first.adminSocket, path);
  }

  /** The xDS node ids the server keeps ACK status for: the Envoys of this manager that have not exited. */
  xdsNodes(): string[] {
    return this.xds.allStatus().map((s) => s.node.id);
  }

  /** The live Envoys (oldest first): pid, xDS node id, admin socket. */
  instances(): Array<{ id: string; pid: number; nodeId: string; adminSocket: string }> {
    return this.envoy.live().map((r) => ({ id: r.id, pid: r.pid, nodeId: r.nodeId, adminSocket: r.adminSocket }));
  }

  /**
   * Planned replacement of every Envoy (meshd proxy restart): each new one
   * is started, ACKs the current snapshot and binds its listeners before the
   * old one drains. Runs between applies, never during one.
   */
  restart(): Promise<{ replaced: number; instances: string[] }> {
    const run = this.queue.then(async () => {
      if (this.stopping) throw new ProxyError('MESHD_PROXY_STOPPED', 'the proxy manager is stopped');
      const r = await this.envoy.restart();
      return { replaced: r.replaced, instances: this.envoy.live().map((x) => x.id) };
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * The agent goes, the Envoys stay: the servers close (each Envoy's xDS
   * and access-log streams reconnect to the next agent on the same sockets)
   * and the instances stay recorded for that agent to adopt.
   */
  detach(): Promise<void> {
    this.halt();
    this.stopping ??= (async () => {
      await this.queue;
      this.lateAck?.abort();
      await this.envoy.detach();
      this.steering?.close();
      await this.kafka.processor?.close();
      // A graceful close waits for the Envoys' access-log streams, which stay open: they end with this process.
      await Promise.race([this.als.close(), sleep(500)]);
      await this.xds.close();
    })();
    return this.stopping;
  }

  /** At once, before anything is awaited: no Envoy is restarted any more, and what waits for an ACK gives up. */
  private halt(): void {
    this.envoy.holdRestarts();
    this.stopSignal.abort();
  }

  stop(): Promise<void> {
    if (this.o.keepEnvoysOnStop) return this.detach();
    this.halt();
    this.stopping ??= (async () => {
      await this.queue;
      this.lateAck?.abort();
      await this.envoy.stop();
      this.steering?.close();
      await this.kafka.processor?.close();
      await this.als.close();
      await this.xds.close();
    })();
    return this.stopping;
  }
}

