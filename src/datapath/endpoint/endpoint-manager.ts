/**
 * The endpoint manager: the one writer of the endpoint datapath's pinned
 * maps (bpf/lxc.c), composed of small pieces that each own one concern:
 *
 *   loader.ts            load lxc.o, reuse (or refuse) the pinned maps
 *   attach.ts            tcx links on the pod's veth, pinned, adopted on restart
 *   endpoint-table.ts    ifindex → ep_id, identity, default-deny flags; pod addresses
 *   policy-map-writer.ts ordered, capacity-checked, all-or-nothing policy diffs
 *   ipcache-writer.ts    prefix → identity, same guarantees
 *   datapath-config.ts   the tunables row (and the ipcache generation)
 *   gc.ts                what a previous agent left for endpoints that did not come back
 *   events.ts            flow events, conntrack, counters
 *
 * On a restart it adopts what is pinned: maps are reused by name, links are
 * found by path and moved to the freshly loaded programs, and the first diff
 * is computed against the map content read back from the kernel, not
 * against memory.
 *
 *   const dp = await EndpointManager.open({ pinDir: '/sys/fs/bpf/meshd' });
 *   await dp.addEndpoint({ endpointId: 'default/web', ifname: 'lxc1234', identity: 1001 });
 *   dp.updatePolicy(policyFromEngine);          // throws MESHD_POLICY_MAP_FULL, keeping the previous policy
 *   dp.syncIpcache(ipcacheFromIdentities);
 *   dp.close();                                 // pins stay: enforcement continues
 *
 * Every method blocks on bpf() syscalls except open() (the verifier runs on
 * the libuv pool). Errors are coded (DatapathError, IpcacheError,
 * PinnedMapMismatchError); a refused write leaves the kernel as it was. Not
 * safe for concurrent use from two processes: one agent owns the pins.
 */
import { type BpfObjectHandle, native } from '../../../native/index.js';
import type { EndpointPolicy, IpcacheEntry } from '../../policy/types.js';
import { EndpointFlag } from '../maps.js';
import { attachEndpointPrograms, destroyPins, detachEndpointPrograms } from './attach.js';
import { type DatapathMetrics, readMetrics } from './datapath-metrics.js';
import { DatapathConfigMap, type DatapathConfigInput, defaultDatapathConfig, validateDatapathConfig } from './datapath-config.js';
import { EndpointTable } from './endpoint-table.js';
import { DatapathError } from './errors.js';
import { type ConntrackEntry, FlowEventStreams, readConntrack } from './events.js';
import type { FlowRecord } from './flow-events.js';
import { purgeConntrack, pruneUnclaimed } from './gc.js';
import { IpcacheError, parsePrefix } from './ipcache.js';
import { type IpcacheSyncResult, IpcacheWriter } from './ipcache-writer.js';
import { type EndpointCapacity, type EndpointFds, loadEndpointObject, type LoadOptions } from './loader.js';
import { type PolicyMapOptions, type PolicyMapState, policyMapState } from './policy-map-state.js';
import { PolicyMapWriter } from './policy-map-writer.js';

export interface OpenOptions extends LoadOptions {
  config?: Partial<DatapathConfigInput>;
  proxyPort?: PolicyMapOptions['proxyPort'];
}

export interface EndpointSpec {
  endpointId: string;
  /** Host side of the pod's veth. */
  ifname: string;
  identity: number;
  /** false: register only, attach nothing (BPF_PROG_TEST_RUN runs as ifindex 1, `lo`). Default true. */
  attach?: boolean;
  /** The pod's addresses: traffic from a local pod to them meets this endpoint's ingress L7 policy at the source's hook. */
  ips?: string[];
}

export interface EndpointState {
  endpointId: string;
  epId: number;
  ifindex: number;
  ifname: string;
  identity: number;
  ips: string[];
  flags: number;
  policyGen: number;
  revision: number;
  /** Entries in the policy map for this endpoint (as read back or as written). */
  entries: PolicyMapState;
}

export interface PolicyUpdateResult {
  endpointId: string;
  revision: number;
  puts: number;
  deletes: number;
  /** False when nothing differed (no write, no generation bump). */
  changed: boolean;
}

export class EndpointManager {
  private readonly byId = new Map<string, EndpointState>();
  private readonly byEpId = new Map<number, EndpointState>();
  /** Policy entries read back whose endpoint has not been added again (kept until it is, or until pruneUnclaimed). */
  private readonly orphanPolicy: Map<number, PolicyMapState>;
  private readonly table: EndpointTable;
  private readonly policy: PolicyMapWriter;
  private readonly ipcache: IpcacheWriter;
  private readonly configMap: DatapathConfigMap;
  private readonly events: FlowEventStreams;
  private config: DatapathConfigInput = { ...defaultDatapathConfig };
  private closed = false;

  private constructor(
    private readonly obj: BpfObjectHandle,
    private readonly fds: EndpointFds,
    readonly pinDir: string,
    capacity: EndpointCapacity,
    private readonly proxyPort: PolicyMapOptions['proxyPort'],
  ) {
    this.table = new EndpointTable(fds, capacity.endpoints);
    this.policy = new PolicyMapWriter(fds, capacity);
    this.configMap = new DatapathConfigMap(fds.config);
    this.ipcache = new IpcacheWriter(fds, capacity, () => this.configMap.bumpIpcacheGen(this.config));
    this.events = new FlowEventStreams(fds.events);
    // Adoption: the first diffs are computed against what the kernel holds.
    this.orphanPolicy = this.policy.readBack();
    this.ipcache.readBack();
  }

  static async open(opts: OpenOptions): Promise<EndpointManager> {
    const { obj, fds, capacity } = await loadEndpointObject(opts);
    try {
      const m = new EndpointManager(obj, fds, opts.pinDir, capacity, opts.proxyPort ?? (() => 0));
      m.setConfig({ ...m.configMap.read(), ...opts.config });
      return m;
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  /** Program fds (for BPF_PROG_TEST_RUN in tests and benchmarks). */
  programFds(): { fromPod: number; toPod: number } {
    return { fromPod: this.fds.fromPod, toPod: this.fds.toPod };
  }

  mapFds(): Readonly<EndpointFds> {
    return this.fds;
  }

  /** Throws MESHD_DATAPATH_CONFIG_INVALID (nothing written) for a value the program would misread. */
  setConfig(c: Partial<DatapathConfigInput>): void {
    this.live();
    const next = { ...this.config, ...c };
    validateDatapathConfig(next);
    this.configMap.write(next, this.configMap.ipcacheGen());
    this.config = next;
  }

  getConfig(): DatapathConfigInput {
    return { ...this.config };
  }

  private live(): void {
    if (this.closed) throw new DatapathError('MESHD_DATAPATH_CLOSED', 'endpoint manager is closed');
  }

  /** Attaches (or adopts) the programs on the endpoint's interface and registers it. Idempotent. */
  async addEndpoint(spec: EndpointSpec): Promise<EndpointState> {
    this.live();
    const ifindex = native.ifNameToIndex(spec.ifname);
    const ips = (spec.ips ?? []).map((ip, i) => {
      const where = `endpoint ${spec.endpointId}.ips[${i}]`;
      const p = parsePrefix(ip, where);
      if (p.bits !== (p.family === 4 ? 32 : 128)) throw new IpcacheError('MESHD_IPCACHE_BAD_PREFIX', `${where}: "${ip}" is not a single address`, { where });
      return p.cidr;
    });
    const row = this.table.get(ifindex) ?? {
      epId: this.table.allocateEpId(this.byEpId.keys(), (id) => this.orphanPolicy.has(id)),
      identity: spec.identity,
      flags: 0,
      policyGen: 0,
    };
    const tracked = this.byEpId.get(row.epId);
    const state: EndpointState = {
      endpointId: spec.endpointId,
      epId: row.epId,
      ifindex,
      ifname: spec.ifname,
      identity: spec.identity,
      ips,
      flags: row.flags,
      policyGen: row.policyGen,
      // Re-adding a tracked endpoint (e.g. its identity changed) keeps what its policy map holds,
      // so the next diff removes stale entries instead of forgetting them.
      revision: tracked?.revision ?? 0,
      entries: tracked?.entries ?? this.orphanPolicy.get(row.epId) ?? new Map(),
    };
    this.orphanPolicy.delete(row.epId);
    this.table.put(ifindex, state);
    this.table.putAddresses(ifindex, state.ips);
    if (spec.attach !== false) attachEndpointPrograms(this.pinDir, ifindex, this.fds);
    this.byId.set(spec.endpointId, state);
    this.byEpId.set(state.epId, state);
    return state;
  }

  endpoint(endpointId: string): EndpointState | undefined {
    return this.byId.get(endpointId);
  }

  endpoints(): EndpointState[] {
    return [...this.byId.values()];
  }

  /**
   * Makes the endpoint's policy map entries and default-deny flags equal to
   * `policy`, writing only the difference, in an order that never allows
   * more than the old or the new policy. If the difference does not fit the
   * map, nothing is written (MESHD_POLICY_MAP_FULL) and the previous policy
   * stays in force; a kernel refusal half-way is rolled back.
   */
  updatePolicy(policy: EndpointPolicy): PolicyUpdateResult {
    this.live();
    const s = this.byId.get(policy.endpointId);
    if (!s) throw new DatapathError('MESHD_ENDPOINT_UNKNOWN', `endpoint ${policy.endpointId} is not attached`, { endpointId: policy.endpointId });
    const ref = { endpointId: policy.endpointId, revision: policy.revision };
    const next = policyMapState(policy, { proxyPort: this.proxyPort });
    const ops = this.policy.plan(ref, s.entries, next);
    const flags =
      (policy.ingress.defaultDeny ? EndpointFlag.DEFAULT_DENY_INGRESS : 0) | (policy.egress.defaultDeny ? EndpointFlag.DEFAULT_DENY_EGRESS : 0);
    if (ops.length === 0 && flags === s.flags) {
      s.revision = policy.revision;
      return { endpointId: s.endpointId, revision: policy.revision, puts: 0, deletes: 0, changed: false };
    }
    // A direction that stops being default-deny opens first; one that becomes default-deny closes last.
    const prevFlags = s.flags;
    if ((prevFlags & ~flags) !== 0) {
      s.flags = prevFlags & flags;
      this.table.put(s.ifindex, s);
    }
    try {
      this.policy.apply(ref, s.epId, s.entries, ops);
    } catch (e) {
      s.flags = prevFlags;
      this.table.put(s.ifindex, s);
      throw e;
    }
    s.entries = next;
    s.flags = flags;
    s.policyGen = (s.policyGen + 1) >>> 0;
    s.revision = policy.revision;
    this.table.put(s.ifindex, s); // the generation bump makes established connections re-check once
    const deletes = ops.filter((o) => o.op === 'delete').length;
    return { endpointId: s.endpointId, revision: policy.revision, puts: ops.length - deletes, deletes, changed: true };
  }

  /** Makes the ipcache equal to `entries` (puts before deletes). If the result does not fit, nothing is written (MESHD_IPCACHE_FULL). */
  syncIpcache(entries: readonly IpcacheEntry[]): IpcacheSyncResult {
    this.live();
    return this.ipcache.sync(entries);
  }

  ipcacheEntries(): IpcacheEntry[] {
    return this.ipcache.entries();
  }

  /** Adds or changes some prefixes, leaving the others (e.g. FQDN-learned addresses). Same guarantees as syncIpcache. */
  upsertIpcache(entries: readonly IpcacheEntry[]): IpcacheSyncResult {
    this.live();
    return this.ipcache.upsert(entries);
  }

  /** Removes some prefixes (absent ones are ignored). */
  deleteIpcache(prefixes: readonly string[]): IpcacheSyncResult {
    this.live();
    return this.ipcache.delete(prefixes);
  }

  /**
   * After a restart, once every live endpoint has been added again: removes
   * what the pins still hold for endpoints that did not come back (their
   * endpoint entry, links, policy entries and conntrack state).
   */
  pruneUnclaimed(): { endpoints: number; policyEntries: number } {
    this.live();
    const claimed = new Set([...this.byId.values()].map((s) => s.ifindex));
    return pruneUnclaimed({ pinDir: this.pinDir, table: this.table, policy: this.policy, ctFd: this.fds.ct, claimed, orphans: this.orphanPolicy });
  }

  /** Detaches the endpoint's programs and removes its policy entries and conntrack state. */
  removeEndpoint(endpointId: string): void {
    this.live();
    const s = this.byId.get(endpointId);
    if (!s) return;
    detachEndpointPrograms(this.pinDir, s.ifindex);
    this.table.deleteAddresses(s.ips);
    this.table.delete(s.ifindex);
    this.policy.remove(s.epId, s.entries.values());
    purgeConntrack(this.fds.ct, new Set([s.epId]));
    this.byId.delete(endpointId);
    this.byEpId.delete(s.epId);
  }

  /** Conntrack entries (decoded), for diagnostics and tests. */
  conntrack(): ConntrackEntry[] {
    return readConntrack(this.fds.ct);
  }

  /** Counters summed over CPUs: drops by direction and reason, new connections allowed and redirected. */
  metrics(): DatapathMetrics {
    return readMetrics(this.fds.metrics);
  }

  /** Streams flow events; malformed records go to onError. */
  onFlowEvents(cb: (records: FlowRecord[]) => void, onError?: (e: unknown) => void): { close(): void } {
    this.live();
    return this.events.subscribe(cb, onError);
  }

  /** Closes fds and readers. Pins (maps and links) stay: enforcement continues. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.events.closeAll();
    this.obj.close();
  }

  /** Removes every pin under pinDir (detaching the programs). For tests and `meshd` uninstall. */
  static destroyPins(pinDir: string): void {
    destroyPins(pinDir);
  }
}
