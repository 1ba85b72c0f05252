/**
 * The socket LB's control side: Service and EndpointSlice objects in, pinned
 * BPF maps out, with only the difference written.
 *
 *   const mgr = await ServiceManager.open({ cgroupPath: '/sys/fs/cgroup', hostNamespaceOnly: true });
 *   mgr.replaceAll(services, slices);  // first sync after start: diffs against the pinned maps
 *   mgr.upsertEndpointSlice(slice);    // later: incremental
 *   mgr.sync();                        // writes what changed, returns how many entries
 *   mgr.status();                      // counters
 *
 * Input arrives parsed (src/k8s: service.ts, endpoint-slice.ts); a bad
 * object never gets here, its source keeps the last good version. A
 * VIP:port claimed by two services stays with the service that holds it (or
 * the first by name); the other's frontend is refused until it is released.
 * Services that would overflow a map are refused, existing entries untouched.
 */
import { LbReconciler, type ReconcileResult } from './lb-reconciler.js';
import { serviceFrontends, type DesiredFrontend, type FrontendOptions } from './service-frontends.js';
import { SERVICE_NAME_LABEL, type EndpointSlice } from '../../k8s/endpoint-slice.js';
import { serviceName, type Service } from '../../k8s/service.js';
import { DEFAULT_PIN_DIR, SockLb, type SockLbStats } from './sock-lb.js';

export type LbLogCode =
  | 'MESHD_LB_DUPLICATE_FRONTEND'
  | 'MESHD_LB_BACKENDS_CAPPED'
  | 'MESHD_LB_CAPACITY'
  | 'MESHD_LB_SKIPPED_PORT';

export interface LbLogEntry {
  level: 'warn' | 'info';
  code: LbLogCode;
  /** namespace/name of the object concerned. */
  object: string;
  msg: string;
}

export type LbLogger = (e: LbLogEntry) => void;

const stderrLogger: LbLogger = (e) => process.stderr.write(`${JSON.stringify({ ts: new Date().toISOString(), component: 'socket-lb', ...e })}\n`);

export interface LbStatus {
  services: number;
  endpointSlices: number;
  frontends: number;
  backends: number;
  duplicateFrontends: number;
  cappedFrontends: number;
  capacityRejected: number;
  syncs: number;
  /** Map entries written or deleted since open. */
  writes: number;
  lastSyncWrites: number;
  /** The maps were already pinned when this manager opened (agent restart). */
  reusedPinnedState: boolean;
}

export interface ServiceManagerOptions {
  pinDir?: string;
  cgroupPath?: string;
  hostNamespaceOnly?: boolean;
  hostNetnsCookie?: bigint;
  attach?: boolean;
  /** bpf.lbMapMax (see SockLbOptions). */
  lbMapMax?: number;
  nodeIPs?: string[];
  /** This node's name (externalTrafficPolicy: Local). */
  nodeName?: string;
  algorithm?: 'random' | 'maglev';
  maxBackendsPerService?: number;
  logger?: LbLogger;
}

export interface SyncResult extends ReconcileResult {
  rejected: number;
}

export class ServiceManager {
  private readonly services = new Map<string, Service>();
  private readonly slices = new Map<string, EndpointSlice>();
  private readonly slicesBySvc = new Map<string, Set<string>>();
  private readonly owners = new Map<string, string>(); // frontend key -> owning service
  private readonly ownedBy = new Map<string, Set<string>>(); // service -> frontend keys it holds
  private readonly waiting = new Map<string, Set<string>>(); // frontend key -> services refused it
  private readonly dirty = new Set<string>();
  private readonly counters = {
    duplicateFrontends: 0,
    cappedFrontends: 0,
    capacityRejected: 0,
    syncs: 0,
    writes: 0,
    lastSyncWrites: 0,
  };
  private readonly log: LbLogger;
  private readonly fopts: FrontendOptions;

  private constructor(
    readonly lb: SockLb,
    private readonly rec: LbReconciler,
    opts: ServiceManagerOptions,
  ) {
    this.log = opts.logger ?? stderrLogger;
    this.fopts = { nodeIPs: opts.nodeIPs ?? [], algorithm: opts.algorithm ?? 'random', maxBackendsPerService: opts.maxBackendsPerService ?? 1024, ...(opts.nodeName === undefined ? {} : { nodeName: opts.nodeName }) };
  }

  /** Loads (or reuses) the pinned maps and programs and mirrors what the maps hold. */
  static async open(opts: ServiceManagerOptions = {}): Promise<ServiceManager> {
    const lb = await SockLb.load({
      pinDir: opts.pinDir ?? DEFAULT_PIN_DIR,
      cgroupPath: opts.cgroupPath ?? '/sys/fs/cgroup',
      hostNamespaceOnly: opts.hostNamespaceOnly ?? false,
      ...(opts.hostNetnsCookie === undefined ? {} : { hostNetnsCookie: opts.hostNetnsCookie }),
      attach: opts.attach ?? true,
      ...(opts.lbMapMax === undefined ? {} : { lbMapMax: opts.lbMapMax }),
    });
    const rec = new LbReconciler(lb.maps);
    rec.restore();
    return new ServiceManager(lb, rec, opts);
  }

  upsertService(svc: Service): void {
    const name = serviceName(svc);
    this.services.set(name, svc);
    this.dirty.add(name);
  }

  deleteService(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    if (this.services.delete(key)) this.dirty.add(key);
  }

  upsertEndpointSlice(s: EndpointSlice): void {
    const key = `${s.metadata.namespace}/${s.metadata.name}`;
    const prev = this.slices.get(key);
    if (prev) this.unlinkSlice(key, prev);
    this.slices.set(key, s);
    const svc = `${s.metadata.namespace}/${s.metadata.labels[SERVICE_NAME_LABEL] ?? ''}`;
    let set = this.slicesBySvc.get(svc);
    if (!set) this.slicesBySvc.set(svc, (set = new Set()));
    set.add(key);
    this.dirty.add(svc);
  }

  deleteEndpointSlice(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const prev = this.slices.get(key);
    if (!prev) return;
    this.unlinkSlice(key, prev);
    this.slices.delete(key);
  }

  private unlinkSlice(key: string, s: EndpointSlice): void {
    const svc = `${s.metadata.namespace}/${s.metadata.labels[SERVICE_NAME_LABEL] ?? ''}`;
    this.slicesBySvc.get(svc)?.delete(key);
    this.dirty.add(svc);
  }

  /**
   * Replaces the whole input set (e.g. after a restart or a relist) and
   * syncs; frontends in the maps that no service claims are removed.
   */
  replaceAll(services: readonly Service[], slices: readonly EndpointSlice[]): SyncResult {
    for (const k of this.services.keys()) this.dirty.add(k);
    for (const k of this.slicesBySvc.keys()) this.dirty.add(k);
    this.services.clear();
    this.slices.clear();
    this.slicesBySvc.clear();
    for (const s of services) this.upsertService(s);
    for (const s of slices) this.upsertEndpointSlice(s);
    return this.sync({ removeOrphans: true });
  }

  /** Writes the changes of every service touched since the last sync. */
  sync(opts: { removeOrphans?: boolean } = {}): SyncResult {
    const changes = new Map<string, DesiredFrontend | null>();
    const claimedNow = new Map<string, string>();
    let rejected = 0;
    // Releasing a frontend can unblock a service that was refused it: a second round picks those up.
    for (let round = 0; round < 4 && this.dirty.size > 0; round++) {
      const names = [...this.dirty].sort();
      this.dirty.clear();
      for (const name of names) rejected += this.planService(name, changes, claimedNow);
    }
    if (opts.removeOrphans) {
      for (const fk of this.rec.frontendKeys()) if (!this.owners.has(fk)) changes.set(fk, null);
    }
    rejected += this.enforceCapacity(changes);
    const r = this.rec.reconcile(changes);
    this.counters.syncs += 1;
    this.counters.writes += r.writes;
    this.counters.lastSyncWrites = r.writes;
    return { ...r, rejected };
  }

  private planService(name: string, changes: Map<string, DesiredFrontend | null>, claimedNow: Map<string, string>): number {
    const svc = this.services.get(name);
    const sliceKeys = this.slicesBySvc.get(name) ?? new Set<string>();
    const slices = [...sliceKeys].flatMap((k) => {
      const s = this.slices.get(k);
      return s ? [s] : [];
    });
    let rejected = 0;
    const wanted = new Set<string>();
    if (svc) {
      const res = serviceFrontends(svc, slices, this.fopts);
      for (const [fe, n] of res.capped) {
        this.counters.cappedFrontends += 1;
        this.log({ level: 'warn', code: 'MESHD_LB_BACKENDS_CAPPED', object: name, msg: `${fe}: ${n} backends, capped to ${this.fopts.maxBackendsPerService}` });
      }
      for (const why of res.skipped) this.log({ level: 'info', code: 'MESHD_LB_SKIPPED_PORT', object: name, msg: why });
      for (const f of res.frontends) {
        const owner = this.owners.get(f.key);
        if (wanted.has(f.key) || (owner !== undefined && owner !== name)) {
          rejected += 1;
          this.counters.duplicateFrontends += 1;
          const by = wanted.has(f.key) ? 'this service (listed twice)' : `service ${owner ?? ''}`;
          this.log({ level: 'warn', code: 'MESHD_LB_DUPLICATE_FRONTEND', object: name, msg: `${f.ip}:${f.port}/${protoName(f.proto)} is already served by ${by}; not programmed` });
          let w = this.waiting.get(f.key);
          if (!w) this.waiting.set(f.key, (w = new Set()));
          w.add(name);
          continue;
        }
        wanted.add(f.key);
        this.owners.set(f.key, name);
        claimedNow.set(f.key, name);
        changes.set(f.key, f);
        this.waiting.get(f.key)?.delete(name);
      }
    }
    for (const fk of this.ownedBy.get(name) ?? []) {
      if (wanted.has(fk)) continue;
      this.owners.delete(fk);
      if (!changes.has(fk) || claimedNow.get(fk) === name) changes.set(fk, null);
      for (const other of this.waiting.get(fk) ?? []) this.dirty.add(other);
      this.waiting.delete(fk);
    }
    if (wanted.size > 0) this.ownedBy.set(name, wanted);
    else this.ownedBy.delete(name);
    return rejected;
  }

  /** Drops new frontends (never existing ones) that would overflow the service or backend map. */
  private enforceCapacity(changes: Map<string, DesiredFrontend | null>): number {
    const svcCap = this.lb.maps.svc.info.maxEntries;
    const beCap = this.lb.maps.backends.info.maxEntries;
    let rejected = 0;
    const fresh = [...changes.entries()].filter(([k, d]) => d !== null && !this.rec.has(k)).reverse();
    while (
      fresh.length > 0 &&
      (this.rec.svcEntries() + this.rec.svcEntriesNeeded(changes) > svcCap || this.rec.backendCount() + this.rec.newBackendsNeeded(changes) > beCap)
    ) {
      const [k, d] = fresh.shift() ?? ['', null];
      changes.delete(k);
      const owner = this.owners.get(k) ?? '';
      this.owners.delete(k);
      this.ownedBy.get(owner)?.delete(k);
      rejected += 1;
      this.counters.capacityRejected += 1;
      this.log({
        level: 'warn',
        code: 'MESHD_LB_CAPACITY',
        object: owner,
        msg: `${d ? `${d.ip}:${d.port}/${protoName(d.proto)}` : k}: service map (${svcCap} entries) or backend map (${beCap}) full; not programmed`,
      });
      // Retry when something is freed: the owner stays dirty-able through a later upsert/replaceAll.
    }
    return rejected;
  }

  status(): LbStatus {
    return {
      services: this.services.size,
      endpointSlices: this.slices.size,
      frontends: this.rec.frontendKeys().length,
      backends: this.rec.backendCount(),
      ...this.counters,
      reusedPinnedState: this.lb.reused,
    };
  }

  /** Datapath counters (translations, refusals, skipped namespaces...). */
  datapathStats(): SockLbStats {
    return this.lb.stats();
  }

  /** Programmed backends of a frontend ("ip:port" in slot order), null if not programmed. */
  backendsOf(ip: string, port: number, proto: 'TCP' | 'UDP' = 'TCP'): string[] | null {
    for (const fk of this.rec.frontendKeys()) {
      const d = this.rec.describe(fk);
      if (d && d.vip === ip && d.port === port && d.proto === (proto === 'TCP' ? 6 : 17)) return d.backends;
    }
    return null;
  }

  /** Turns the socket LB off: detaches the programs (maps stay pinned). */
  detach(): void {
    this.lb.detach();
  }

  close(): void {
    this.lb.close();
  }
}

function protoName(p: number): string {
  return p === 6 ? 'TCP' : p === 17 ? 'UDP' : String(p);
}
