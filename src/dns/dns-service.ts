/**
 * The agent's DNS side: the FQDN cache (restored from disk before the policy
 * engine exists, so the first write already has every learned address), the
 * proxy on its port (in its own worker thread: proxy-thread.ts), the path
 * from an allowed answer to the kernel, and the expiry sweep.
 *
 *   const cache = openAgentFqdnCache(cfg, log);                  // before new PolicyEngine({ dns: cache })
 *   const dns = await DnsService.start({ cfg, cache, engine, port, apply, inUse, log });
 *   await dns.syncPolicy();                                      // after every reconcile
 *   dns.port;  dns.list();  await dns.stats();  await dns.stop();
 *
 * An allowed answer with addresses goes to the cache (per endpoint, every
 * name of the CNAME chain). When that changes a name's addresses, the cache
 * file is written, the engine gives the new addresses identities and
 * re-evaluates the toFQDNs selectors, and `apply()` (the agent's serialised
 * reconcile) writes the ipcache and the policy maps; only then is the answer
 * released, or after dnsProxy.proxyResponseMaxDelay. An address whose TTL
 * (at least dnsProxy.minTtl) and grace have passed goes once no conntrack
 * entry uses it.
 */
import { join } from 'node:path';
import type { AgentConfig } from '../agent/config.js';
import type { FqdnCache } from '../policy/dns-cache.js';
import { matchDnsSelector } from '../policy/l7-match.js';
import { MeshdError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { DnsPolicySource } from './dns-policy.js';
import { openFqdnCache, saveFqdnCache } from './fqdn-state.js';
import { type PolicyMirrorEngine, PolicyMirrorSource } from './policy-mirror.js';
import type { DnsProxyStats, DnsRecord } from './proxy.js';
import { DnsProxyThread } from './proxy-thread.js';
import { defaultPolicyRouting, ensurePolicyRouting, ensurePolicyRouting6 } from '../proxy/policy-routing.js';
import { RoutingWatch } from './routing-watch.js';
import { ensureUpstreamReturn } from './upstream-return.js';

const ROUTING_CHECK_MS = 60_000;

/** MESHD_DNS_PROXY_NOT_RUNNING: asked of the DNS side of an agent whose proxy did not start. */
export class DnsProxyNotRunningError extends MeshdError {
  constructor(what: string) {
    super('MESHD_DNS_PROXY_NOT_RUNNING', `${what}: the agent runs no DNS proxy`, { kind: 'unavailable' });
  }
}

export const fqdnStateFile = (stateDir: string): string => join(stateDir, 'fqdn-cache.json');

export function openAgentFqdnCache(cfg: AgentConfig, log: Logger): FqdnCache {
  return openFqdnCache(
    fqdnStateFile(cfg.stateDir),
    { minTtlSeconds: cfg['dnsProxy.minTtl'], maxIpsPerHost: cfg['dnsProxy.endpointMaxIpPerHostname'], graceMs: cfg['dnsProxy.idleConnectionGracePeriod'] },
    (e) => log.error('state file corrupt; moved aside, the entries that parse are kept', { code: e.code, file: e.file, movedTo: e.movedTo, problem: e.detail }),
  );
}

export interface DnsServiceOptions {
  cfg: AgentConfig;
  cache: FqdnCache;
  engine: DnsPolicySource & PolicyMirrorEngine & { settled(): Promise<void>; selectsName(name: string): boolean };
  /** The proxy port (dnsProxy.proxyPort, or the persisted one from proxy.portRange). */
  port: number;
  /** Writes what the engine computed to the kernel (the agent's serialised reconcile). */
  apply(): Promise<void>;
  /** Whether a connection (conntrack) still uses an address; asked only for expired ones. */
  inUse(): (ip: string) => boolean;
  log: Logger;
  /** How often expired addresses are looked for (default 5 s). */
  sweepMs?: number;
}

export class DnsService {
  private timer: NodeJS.Timeout | null = null;
  private saveTimer: NodeJS.Timeout | null = null;
  /** ensurePolicyRouting() ran in start(). */
  private routingCheckedAt = Date.now();
  private watch: RoutingWatch | null = null;
  private repairing: Promise<void> | null = null;
  private repairAgain = false;

  private constructor(
    private readonly o: DnsServiceOptions,
    readonly proxy: DnsProxyThread,
  ) {}

  static async start(o: DnsServiceOptions): Promise<DnsService> {
    // The datapath's redirects reach the proxy through the proxy mark's policy routing (idempotent; shared with Envoy),
    // for IPv6 DNS flows too (a node without IPv6 serves IPv4).
    await ensurePolicyRouting();
    await ensurePolicyRouting6().catch((e: unknown) => o.log.warn('IPv6 policy routing for the DNS proxy not installed', { err: e }));
    const ref: { svc?: DnsService } = {};
    // Transparent legs need a way back for the resolver's answer, which is addressed to the pod: a resolver that is a
    // local endpoint answers through this node's datapath, which hands it to the proxy's socket; any other resolver
    // (off the node, a Service backend elsewhere) needs the netfilter return rule (upstream-return.ts). The node's
    // own addresses (a host-network resolver) never: its answers are routed out to the pod directly.
    let offNode = false;
    if (o.cfg['dnsProxy.enableTransparentMode']) {
      offNode = await ensureUpstreamReturn().then(
        () => true,
        (e: unknown) => {
          o.log.warn('transparent DNS legs only to resolvers on this node: no return path for others', { err: e });
          return false;
        },
      );
    }
    const proxy = await DnsProxyThread.start({
      data: {
        port: o.port,
        rejectRcode: o.cfg['dnsProxy.dnsRejectResponseCode'],
        responseMaxDelayMs: o.cfg['dnsProxy.proxyResponseMaxDelay'],
        transparent: { enabled: o.cfg['dnsProxy.enableTransparentMode'], offNode },
      },
      policy: new PolicyMirrorSource(o.engine),
      learn: (endpointId, names, ips, ttl) => ref.svc?.learn(endpointId, names, ips, ttl),
      log: o.log,
    });
    const svc = new DnsService(o, proxy);
    ref.svc = svc;
    svc.timer = setInterval(() => void svc.sweep(), o.sweepMs ?? 5000);
    svc.timer.unref();
    // Put the routing back the moment someone removes it (no polling: see routing-watch.ts).
    svc.watch = RoutingWatch.start({ table: defaultPolicyRouting.table, onLost: () => svc.repairRouting(), log: o.log });
    return svc;
  }

  get port(): number {
    return this.proxy.port;
  }

  get cache(): FqdnCache {
    return this.o.cache;
  }

  stats(): Promise<DnsProxyStats> {
    return this.proxy.stats();
  }

  recent(): Promise<DnsRecord[]> {
    return this.proxy.recent();
  }

  /** Hands the proxy's judge what the last reconcile enforced; resolves once it judges with it. */
  syncPolicy(): Promise<void> {
    return this.proxy.syncPolicy();
  }

  /** Per endpoint and name: addresses, TTL, expiry, source. */
  list(endpoint?: string): ReturnType<FqdnCache['list']> {
    return this.o.cache.list(endpoint);
  }

  /**
   * From an answer to the kernel: a promise that resolves once new addresses are enforced, or undefined
   * when the answer changed no address (a TTL refresh, the common case: no promise, no timer, written
   * to disk within a second).
   */
  learn(endpointId: string, names: readonly string[], ips: readonly string[], ttl: number): Promise<void> | undefined {
    let changed = false;
    for (const n of names) changed = this.o.cache.observe(endpointId, n, ips, ttl) || changed;
    // Only names some toFQDNs selector matches get identities (as in Cilium): for the others nothing is
    // enforced, so the answer goes at once and the cache is written within a second.
    if (!changed || !names.some((n) => this.o.engine.selectsName(n))) {
      this.saveSoon();
      return undefined;
    }
    return this.enforce(endpointId, names, ips);
  }

  /**
   * `meshd fqdn cache flush`: removes the entries of one endpoint and/or one name (a name, or a
   * matchPattern such as `*.example.com`; everything without either). Addresses a connection still
   * uses expire instead and go once unused. The identities, ipcache entries and policy map entries of
   * the removed addresses are gone from the kernel when this resolves.
   */
  async flush(f: { endpoint?: string; name?: string }): Promise<Array<{ endpoint: string; name: string; ips: string[] }>> {
    const sel = f.name === undefined ? undefined : f.name.includes('*') ? { matchPattern: f.name } : { matchName: f.name };
    const removed = this.o.cache.flush({ ...(f.endpoint === undefined ? {} : { endpoint: f.endpoint }), ...(sel ? { name: (n: string) => matchDnsSelector(sel, n) } : {}) }, this.o.inUse());
    if (removed.length > 0) this.proxy.forget();
    this.save();
    await this.o.engine.settled();
    await this.o.apply();
    this.o.log.info('FQDN cache flushed', { endpoint: f.endpoint, name: f.name, removed: removed.length });
    return removed;
  }

  private async enforce(endpointId: string, names: readonly string[], ips: readonly string[]): Promise<void> {
    const t0 = performance.now();
    this.save();
    await this.o.engine.settled();
    await this.o.apply();
    this.o.log.debug('FQDN addresses enforced', { endpoint: endpointId, names, ips, ms: Math.round(performance.now() - t0) });
  }

  /** Drops expired, unused addresses and writes the result; re-checks the proxy mark's policy routing now and then. */
  async sweep(now: number = Date.now()): Promise<string[]> {
    // The policy routing is node-wide state others may remove (an uninstall, an operator's flush). The watch
    // repairs it at once; this slow check is the fallback. Checking runs `ip` twice, and starting a process
    // stalls this event loop (and the proxy's answers) for milliseconds: once a minute, not every sweep.
    if (now - this.routingCheckedAt >= ROUTING_CHECK_MS) {
      this.routingCheckedAt = now;
      await this.ensureRouting();
    }
    let used: ((ip: string) => boolean) | undefined;
    const changed = this.o.cache.expire(now, (ip) => (used ??= this.o.inUse())(ip));
    if (changed.length === 0) return changed;
    this.proxy.forget();
    this.save();
    try {
      await this.o.engine.settled();
      await this.o.apply();
    } catch (e) {
      this.o.log.error('expired FQDN addresses not applied', { names: changed, err: e });
    }
    return changed;
  }

  private async ensureRouting(): Promise<void> {
    await ensurePolicyRouting().catch((e: unknown) => this.o.log.warn('policy routing for the DNS proxy', { err: e }));
    if ((await this.proxy.stats().catch(() => null))?.ipv6 ?? true) await ensurePolicyRouting6().catch((e: unknown) => this.o.log.warn('IPv6 policy routing for the DNS proxy', { err: e }));
    if (this.o.cfg['dnsProxy.enableTransparentMode']) await ensureUpstreamReturn().catch((e: unknown) => this.o.log.warn('return rule for transparent DNS legs', { err: e }));
  }

  /** One repair at a time; a loss reported during one is repaired once more after it. */
  private repairRouting(): void {
    if (this.repairing) {
      this.repairAgain = true;
      return;
    }
    this.o.log.warn('policy routing for the DNS proxy was removed; putting it back');
    this.repairing = this.ensureRouting().finally(() => {
      this.repairing = null;
      if (this.repairAgain) {
        this.repairAgain = false;
        this.repairRouting();
      }
    });
  }

  async stop(): Promise<void> {
    this.watch?.stop();
    this.watch = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    await this.proxy.stop();
    this.save();
  }

  private save(): void {
    try {
      saveFqdnCache(fqdnStateFile(this.o.cfg.stateDir), this.o.cache);
    } catch (e) {
      this.o.log.error('FQDN cache not saved', { err: e });
    }
  }

  /** TTL refreshes change no address: written within a second, not on every answer. */
  private saveSoon(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      this.save();
    }, 1000);
    this.saveTimer.unref();
  }
}
