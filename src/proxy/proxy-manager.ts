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
 * (NACK) apply() rejects with a ProxyError carrying Envoy's message, and the
 * server goes back to serving the last ACKed content, so Envoy keeps it and a
 * restarted Envoy receives it too; the caller must then not program the new
 * REDIRECT entries (they could point at a listener that does not exist).
 *
 * Envoy restarts (crash, kill) are the supervisor's: Envoy reconnects to the
 * xDS server, which still holds the current snapshot, and gets everything
 * back. stop() stops Envoy and the servers and keeps the policy routing: the
 * datapath keeps enforcing, and redirected flows fail closed until Envoy is
 * back (no listener = PROXY_UNAVAILABLE drop).
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildBootstrap } from '../../envoy/bootstrap.js';
import { findEnvoyProcesses, stopProcesses } from '../../envoy/orphans.js';
import { EnvoySupervisor, type EnvoyStatus } from '../../envoy/supervisor.js';
import { isXdsError, type NodeStatus, XdsServer, type XdsLogger } from '../../xds/index.js';
import type { Direction, L7Kind } from '../policy/types.js';
import type { Logger } from '../util/log.js';
import { AccessLogServer, type L7FlowRecord } from './access-log-server.js';
import { defaultPolicyRouting, ensurePolicyRouting, type PolicyRoutingOptions } from './policy-routing.js';
import { ProxyPorts } from './proxy-ports.js';
import { type L7Endpoint, listenerName, type Redirect, type TranslateOutput, translateL7 } from './translate.js';

export interface ProxyManagerOptions {
  nodeName: string;
  stateDir: string;
  portRange: readonly [number, number];
  xdsMode: 'sotw' | 'delta';
  envoyBinaryPath?: string;
  log: Logger;
  ackTimeoutMs?: number;
  /** Policy routing for the proxy mark (default: fwmark 0xb00/0xf00 → table 2004, priority 9). Tests use their own table. */
  routing?: PolicyRoutingOptions;
  /** Seconds Envoy drains listeners on stop and on LDS changes (default 2). */
  drainTimeS?: number;
  /** Envoy worker threads (default 2). */
  concurrency?: number;
}

export interface ProxyApplyInput {
  /** Every local endpoint: its policy and addresses. */
  endpoints: L7Endpoint[];
  /** The ipcache's identity → addresses (prefixes). */
  identityIps: ReadonlyMap<number, readonly string[]>;
}

export interface ProxyApplyResult {
  /** Snapshot version Envoy ACKed. */
  version: string;
  redirects: Redirect[];
  unsupported: TranslateOutput['unsupported'];
}

export type ProxyErrorCode = 'PROXY_CONFIG_REJECTED' | 'PROXY_ACK_TIMEOUT' | 'PROXY_STOPPED';

export class ProxyError extends Error {
  override readonly name = 'ProxyError';
  constructor(
    readonly code: ProxyErrorCode,
    message: string,
    /** Envoy's own message for a rejection (NACK). */
    readonly envoyMessage?: string,
    readonly version?: string,
    /** Policies whose L7 rules are in the listeners Envoy named in its rejection (for the policies' status). */
    readonly policies: readonly string[] = [],
  ) {
    super(message);
  }
}

interface Served {
  version: string;
  hash: string;
  out: TranslateOutput;
}

function xdsLogger(log: Logger): XdsLogger {
  return { info: (m, f) => log.debug(m, f), warn: (m, f) => log.warn(m, f), error: (m, f) => log.error(m, f) };
}

/** The policies behind the HTTP rules of the listeners an Envoy rejection names ("…listener(s) meshd-http-egress: …"). */
function policiesIn(input: ProxyApplyInput, message: string): string[] {
  const out = new Set<string>();
  for (const direction of ['ingress', 'egress'] as const) {
    if (!message.includes(listenerName('http', direction))) continue;
    for (const ep of input.endpoints) {
      for (const e of ep.policy[direction].entries) if (e.verdict === 'REDIRECT' && e.l7?.kind === 'http') for (const p of e.derivedFrom) out.add(p);
    }
  }
  return [...out].sort();
}

function contentHash(out: TranslateOutput): string {
  return createHash('sha256').update(JSON.stringify({ l: out.listeners, c: out.clusters })).digest('hex');
}

export class ProxyManager {
  private seq = 0;
  /** Last snapshot Envoy ACKed (what is served after a NACK). */
  private good: Served | null = null;
  /** Last snapshot set on the server. */
  private current: Served | null = null;
  private lastNack: { version: string; message: string; at: string; hash: string } | null = null;
  private readonly ackedListeners = new Map<string, string>();
  private queue: Promise<unknown> = Promise.resolve();
  private stopping: Promise<void> | null = null;

  private constructor(
    private readonly o: ProxyManagerOptions,
    private readonly xds: XdsServer,
    private readonly als: AccessLogServer,
    private readonly envoy: EnvoySupervisor,
    private readonly ports: ProxyPorts,
  ) {}

  static async start(o: ProxyManagerOptions): Promise<ProxyManager> {
    mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
    const log = o.log.child({ component: 'proxy' });
    const ports = ProxyPorts.open({ stateFile: join(o.stateDir, 'proxy-ports.json'), range: o.portRange });
    await ensurePolicyRouting(o.routing ?? defaultPolicyRouting);
    const xds = new XdsServer({ log: xdsLogger(log) });
    const xdsSock = join(o.stateDir, 'xds.sock');
    const alsSock = join(o.stateDir, 'als.sock');
    const als = new AccessLogServer({ socketPath: alsSock });
    const bootstrap = buildBootstrap({
      nodeId: o.nodeName,
      xds: { unix: xdsSock },
      xdsMode: o.xdsMode,
      admin: { unix: join(o.stateDir, 'envoy-admin.sock') },
      als: { unix: alsSock },
    });
    const sup: ConstructorParameters<typeof EnvoySupervisor>[0] = {
      bootstrap,
      workDir: join(o.stateDir, 'envoy'),
      drainTimeS: o.drainTimeS ?? 2,
      concurrency: o.concurrency ?? 2,
      backoff: { initialMs: 200, maxMs: 10_000 },
    };
    if (o.envoyBinaryPath !== undefined) sup.binaryPath = o.envoyBinaryPath;
    const envoy = new EnvoySupervisor(sup);
    const m = new ProxyManager(o, xds, als, envoy, ports);
    envoy.on('exit', (e: { code: number | null; signal: string | null }) => {
      if (!m.stopping) log.warn('envoy exited', e);
    });
    envoy.on('restarting', (delayMs: number) => log.info('restarting envoy', { delayMs }));
    envoy.on('ready', (pid: number) => log.info('envoy ready', { pid }));
    try {
      // An Envoy a previous agent could not stop still holds the proxy ports: stop it first.
      const stale = findEnvoyProcesses(join(sup.workDir, 'bootstrap.json'));
      if (stale.length > 0) {
        log.warn('stopping Envoy left by a previous agent', { pids: stale });
        await stopProcesses(stale);
      }
      await xds.listen(`unix:${xdsSock}`);
      await als.listen();
      // An empty first snapshot: Envoy initialises at once instead of waiting out its fetch timeout.
      m.publish({ listeners: [], clusters: [], redirects: [], unsupported: [] });
      await envoy.start();
    } catch (e) {
      await m.stop();
      throw e;
    }
    return m;
  }

  proxyPort(kind: L7Kind, direction: Direction): number {
    return this.ports.portFor(kind, direction);
  }

  apply(input: ProxyApplyInput): Promise<ProxyApplyResult> {
    const run = this.queue.then(() => this.applyNow(input));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private publish(out: TranslateOutput): Served {
    this.seq += 1;
    const s: Served = { version: `v${this.seq}`, hash: contentHash(out), out };
    this.xds.setSnapshot(this.o.nodeName, { version: s.version, resources: { listeners: out.listeners, clusters: out.clusters } });
    this.current = s;
    return s;
  }

  private async applyNow(input: ProxyApplyInput): Promise<ProxyApplyResult> {
    if (this.stopping) throw new ProxyError('PROXY_STOPPED', 'the proxy manager is stopped');
    const out = translateL7({ endpoints: input.endpoints, identityIps: input.identityIps, ports: this.ports, accessLog: true });
    const hash = contentHash(out);
    if (this.lastNack?.hash === hash) {
      // The same content Envoy rejected: do not send it again.
      const n = this.lastNack;
      throw new ProxyError('PROXY_CONFIG_REJECTED', `Envoy rejected this configuration (snapshot ${n.version}): ${n.message}`, n.message, n.version, policiesIn(input, n.message));
    }
    const snap = this.current?.hash === hash ? { ...this.current, out } : this.publish(out);
    const log = this.o.log.child({ component: 'proxy' });
    try {
      await this.xds.waitForAck(this.o.nodeName, snap.version, { timeoutMs: this.o.ackTimeoutMs ?? 15_000 });
    } catch (e) {
      if (isXdsError(e, 'MESHD_XDS_NACKED')) {
        const message = e.message;
        this.lastNack = { version: snap.version, message, at: new Date().toISOString(), hash };
        log.warn('envoy rejected the proxy configuration; the previous one stays in force', { version: snap.version, message });
        // Serve the last good content again, so a reconnecting Envoy does not receive the rejected one.
        if (this.good) this.publish(this.good.out);
        else this.publish({ listeners: [], clusters: [], redirects: [], unsupported: [] });
        throw new ProxyError('PROXY_CONFIG_REJECTED', `Envoy rejected snapshot ${snap.version}: ${message}`, message, snap.version, policiesIn(input, message));
      }
      if (isXdsError(e, 'MESHD_XDS_ACK_TIMEOUT')) {
        throw new ProxyError('PROXY_ACK_TIMEOUT', `Envoy did not ACK snapshot ${snap.version} in time (envoy ${this.envoy.status().state})`, undefined, snap.version);
      }
      throw e;
    }
    this.good = { version: snap.version, hash, out };
    this.lastNack = null;
    this.ackedListeners.clear();
    for (const l of out.listeners) if (typeof l.name === 'string') this.ackedListeners.set(l.name, snap.version);
    return { version: snap.version, redirects: out.redirects, unsupported: out.unsupported };
  }

  status(): {
    envoy: EnvoyStatus;
    xds: NodeStatus | undefined;
    ports: Array<{ key: string; port: number }>;
    listeners: Array<{ name: string; port: number; endpoints: string[]; ackedVersion: string | null }>;
    lastNack: { version: string; message: string; at: string } | null;
  } {
    const listeners = (this.current?.out.listeners ?? []).map((l) => {
      const name = typeof l.name === 'string' ? l.name : '';
      const chains = Array.isArray(l.filter_chains) ? (l.filter_chains as unknown[]) : [];
      const endpoints = new Set<string>();
      for (const c of chains) {
        const n = typeof c === 'object' && c !== null && 'name' in c && typeof c.name === 'string' ? c.name : '';
        // chain names are "<namespace>/<name>/<direction>[/…]"
        const [ns, ep] = n.split('/');
        if (ns && ep) endpoints.add(`${ns}/${ep}`);
      }
      return { name, port: this.ports.list().find((p) => `meshd-${p.key}` === name)?.port ?? 0, endpoints: [...endpoints].sort(), ackedVersion: this.ackedListeners.get(name) ?? null };
    });
    return {
      envoy: this.envoy.status(),
      xds: this.xds.status(this.o.nodeName),
      ports: this.ports.list(),
      listeners,
      lastNack: this.lastNack ? { version: this.lastNack.version, message: this.lastNack.message, at: this.lastNack.at } : null,
    };
  }

  recentAccessLogs(): L7FlowRecord[] {
    return this.als.recent();
  }

  /** Access-log records received since start, by verdict. */
  accessLogCounts(): { forwarded: number; denied: number; error: number; malformed: number } {
    return { ...this.als.counters };
  }

  /** GET on Envoy's admin API (stats, listeners), for status and tests. */
  adminRequest(path: string): Promise<{ status: number; body: string }> {
    return this.envoy.adminRequest(path);
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.queue;
      await this.envoy.stop();
      await this.als.close();
      await this.xds.close();
    })();
    return this.stopping;
  }
}
