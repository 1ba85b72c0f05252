/**
 * The endpoint manager: the one writer of the endpoint datapath's pinned
 * maps (bpf/lxc.c). Per endpoint it attaches the two tc programs to the host
 * side of the pod's veth (tcx links, pinned), writes the endpoint's policy as
 * ordered incremental diffs against what the kernel holds, and keeps the
 * ipcache in sync. On a restart it adopts what is pinned: maps are reused by
 * name, links are found by path and moved to the freshly loaded programs, and
 * the first diff is computed against the map content read back from the
 * kernel, not against memory.
 *
 *   const dp = await EndpointManager.open({ pinDir: '/sys/fs/bpf/meshd' });
 *   await dp.addEndpoint({ endpointId: 'default/web', ifname: 'lxc1234', identity: 1001 });
 *   dp.updatePolicy(policyFromEngine);          // throws MESHD_POLICY_MAP_FULL, keeping the previous policy
 *   dp.syncIpcache(ipcacheFromIdentities);
 *   dp.close();                                 // pins stay: enforcement continues
 *
 * Not safe for concurrent use from two processes: one agent owns the pins.
 */
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BPF_ANY, type BpfObjectHandle, native, openObject, type RingBufferReaderHandle } from '../../../native/index.js';
import type { EndpointPolicy, IpcacheEntry } from '../../policy/types.js';
import { bpfObjectPath } from '../../util/paths.js';
import { decodeFlowEvent, type FlowRecord } from './flow-events.js';
import { desiredIpcache, diffIpcache, ipcacheKey, IpcacheError, parsePrefix, prefixFromKey } from './ipcache.js';
import { type DatapathMetrics, readMetrics } from './datapath-metrics.js';
import { CtEntry, CtKey, DatapathConfig, EndpointFlag, EndpointValue, IpcacheValue, PolicyKey, PolicyValue } from '../maps.js';
import { isMapFull, MapTransaction } from './map-transaction.js';
import {
  diffPolicyMapState,
  type PolicyMapEntry,
  type PolicyMapKey,
  type PolicyMapOptions,
  type PolicyMapState,
  policyKeyId,
  policyKeyPrefixlen,
  policyMapState,
  verdictCode,
  verdictFromCode,
} from './policy-map-state.js';

export type DatapathErrorCode =
  | 'MESHD_POLICY_MAP_FULL'
  | 'MESHD_IPCACHE_FULL'
  | 'MESHD_ENDPOINT_UNKNOWN'
  | 'MESHD_ENDPOINT_TABLE_FULL'
  | 'MESHD_MAP_WRITE_FAILED'
  | 'MESHD_DATAPATH_CLOSED';

export class DatapathError extends Error {
  constructor(
    readonly code: DatapathErrorCode,
    message: string,
    readonly detail: Record<string, number | string> = {},
  ) {
    super(message);
  }
}

export interface DatapathConfigInput {
  /** Mark put on packets assigned to the proxy; must match the `ip rule fwmark` (default 0xb00/0xf00). */
  proxyMark: number;
  proxyMarkMask: number;
  /** Where the proxy's transparent listeners are looked up (default 127.0.0.1). */
  proxyIpv4: string;
  /** 0: no verdict events for new connections; 1: all; N: one in N. */
  verdictSample: number;
  /** socketLB.hostNamespaceOnly=true: translate service VIPs per packet for pod sockets. */
  perPacketLb: boolean;
  sockmapShortcut: boolean;
}

export const defaultDatapathConfig: DatapathConfigInput = {
  proxyMark: 0xb00,
  proxyMarkMask: 0xf00,
  proxyIpv4: '127.0.0.1',
  verdictSample: 0,
  perPacketLb: false,
  sockmapShortcut: false,
};

export interface OpenOptions {
  /** bpffs directory for maps (by name) and links (links/). */
  pinDir: string;
  /** Object to load (default bpf/build/lxc.o). */
  objectPath?: string;
  /** Resize maps before load (tests; a pinned map of another size is not reused). */
  maxEntries?: Partial<Record<'meshd_policy' | 'meshd_pol_exact' | 'meshd_ipcache' | 'meshd_ipc_host' | 'meshd_ct' | 'meshd_endpoints' | 'meshd_nat', number>> &
    /** The socket LB's maps this object shares by pin must be sized as the socket LB sized them (bpf.lbMapMax). */
    Partial<Record<'meshd_lb_svc' | 'meshd_lb_be' | 'meshd_lb_revnat' | 'meshd_lb_affin' | 'meshd_lb_affm' | 'meshd_lb_maglev', number>>;
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

export interface IpcacheSyncResult {
  puts: number;
  deletes: number;
  size: number;
}

interface Fds {
  fromPod: number;
  toPod: number;
  /** LPM trie: port ranges, any port, any protocol */
  policy: number;
  /** hash: exact ports */
  policyExact: number;
  /** LPM trie: prefixes shorter than a whole address */
  ipcache: number;
  /** hash: /32 and /128 */
  ipcacheHost: number;
  ct: number;
  endpoints: number;
  config: number;
  events: number;
  nat: number;
  epIps: number;
  metrics: number;
}

function u32key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

type PolicyMapName = 'policy' | 'policyExact';

/** Exact-port keys live in the hash, everything else in the trie (bpf/lib/policy.h). */
function policyMapOf(k: PolicyMapKey): PolicyMapName {
  return !k.anyProto && k.portBits === 16 ? 'policyExact' : 'policy';
}

function ipcacheMapOf(bits: number, family: 4 | 6): 'ipcache' | 'ipcacheHost' {
  return bits === (family === 4 ? 32 : 128) ? 'ipcacheHost' : 'ipcache';
}

function encodePolicyKey(epId: number, k: PolicyMapKey): Buffer {
  return PolicyKey.encode({ prefixlen: policyKeyPrefixlen(k), ep_id: epId, identity: k.identity, egress: k.egress, proto: k.proto, dport: k.port });
}

function decodePolicyEntry(key: Buffer, value: Buffer): { epId: number; entry: PolicyMapEntry } | undefined {
  const k = PolicyKey.decode(key);
  const v = PolicyValue.decode(value);
  const verdict = verdictFromCode(v.verdict);
  if (!verdict || (k.egress !== 0 && k.egress !== 1)) return undefined;
  const anyProto = k.prefixlen === 72;
  const mk: PolicyMapKey = { identity: k.identity, egress: k.egress, proto: k.proto, port: k.dport, portBits: anyProto ? 0 : k.prefixlen - 80, anyProto };
  return { epId: k.ep_id, entry: { key: mk, value: { verdict, proxyPort: v.proxy_port } } };
}

function ipv4ToNumber(ip: string): number {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (!m) throw new RangeError(`config.proxyIpv4: "${ip}" is not an IPv4 address`);
  return m.slice(1, 5).reduce((acc, x) => acc * 256 + Number(x), 0);
}

export class EndpointManager {
  private readonly byId = new Map<string, EndpointState>();
  private readonly byEpId = new Map<number, EndpointState>();
  /** Entries of the policy map not owned by a known endpoint (read back, kept until their endpoint returns). */
  private readonly orphanPolicy = new Map<number, PolicyMapState>();
  private ipcache = new Map<string, { identity: number; map: 'ipcache' | 'ipcacheHost' }>();
  private readonly policyCount: Record<PolicyMapName, number> = { policy: 0, policyExact: 0 };
  private closed = false;
  private readonly readers = new Set<RingBufferReaderHandle>();

  private constructor(
    private readonly obj: BpfObjectHandle,
    private readonly fds: Fds,
    readonly pinDir: string,
    private readonly capacity: { policy: number; policyExact: number; ipcache: number; ipcacheHost: number; endpoints: number },
    private config: DatapathConfigInput,
    private readonly proxyPort: PolicyMapOptions['proxyPort'],
  ) {}

  static async open(opts: OpenOptions): Promise<EndpointManager> {
    mkdirSync(join(opts.pinDir, 'links'), { recursive: true });
    const obj = openObject(opts.objectPath ?? bpfObjectPath('lxc'), { pinRoot: opts.pinDir });
    try {
      for (const [name, n] of Object.entries(opts.maxEntries ?? {})) obj.setMaxEntries(name, n);
      await obj.load();
      const fds: Fds = {
        fromPod: obj.programFd('meshd_from_pod'),
        toPod: obj.programFd('meshd_to_pod'),
        policy: obj.mapFd('meshd_policy'),
        policyExact: obj.mapFd('meshd_pol_exact'),
        ipcache: obj.mapFd('meshd_ipcache'),
        ipcacheHost: obj.mapFd('meshd_ipc_host'),
        ct: obj.mapFd('meshd_ct'),
        endpoints: obj.mapFd('meshd_endpoints'),
        config: obj.mapFd('meshd_config'),
        events: obj.mapFd('meshd_events'),
        nat: obj.mapFd('meshd_nat'),
        epIps: obj.mapFd('meshd_ep_ips'),
        metrics: obj.mapFd('meshd_metrics'),
      };
      const size = (name: string) => obj.maps().find((m) => m.name === name)?.maxEntries ?? 0;
      const capacity = {
        policy: size('meshd_policy'),
        policyExact: size('meshd_pol_exact'),
        ipcache: size('meshd_ipcache'),
        ipcacheHost: size('meshd_ipc_host'),
        endpoints: size('meshd_endpoints'),
      };
      const proxyPort = opts.proxyPort ?? (() => 0);
      const m = new EndpointManager(obj, fds, opts.pinDir, capacity, { ...defaultDatapathConfig }, proxyPort);
      m.adoptPinnedState();
      m.setConfig({ ...m.readConfig(), ...opts.config });
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

  mapFds(): Readonly<Fds> {
    return this.fds;
  }

  /** Reads back endpoints, policy entries and the ipcache from the pinned maps. */
  private adoptPinnedState(): void {
    for (const map of ['policy', 'policyExact'] as const) {
      for (const [key, value] of native.mapDump(this.fds[map])) {
        const d = decodePolicyEntry(key, value);
        if (!d) continue;
        let st = this.orphanPolicy.get(d.epId);
        if (!st) this.orphanPolicy.set(d.epId, (st = new Map()));
        st.set(policyKeyId(d.entry.key), d.entry);
        this.policyCount[map] += 1;
      }
    }
    for (const map of ['ipcache', 'ipcacheHost'] as const) {
      for (const [key, value] of native.mapDump(this.fds[map])) {
        this.ipcache.set(prefixFromKey(key).cidr, { identity: IpcacheValue.decode(value).identity, map });
      }
    }
  }

  private readConfig(): DatapathConfigInput {
    const raw = native.mapLookup(this.fds.config, u32key(0), DatapathConfig.size);
    if (!raw) return { ...defaultDatapathConfig };
    const c = DatapathConfig.decode(raw);
    if (c.proxy_mark === 0 && c.proxy_ipv4 === 0) return { ...defaultDatapathConfig };
    const ip = c.proxy_ipv4;
    return {
      proxyMark: c.proxy_mark,
      proxyMarkMask: c.proxy_mark_mask,
      proxyIpv4: `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`,
      verdictSample: c.verdict_sample,
      perPacketLb: (c.flags & 1) !== 0,
      sockmapShortcut: (c.flags & 2) !== 0,
    };
  }

  private ipcacheGen(): number {
    const raw = native.mapLookup(this.fds.config, u32key(0), DatapathConfig.size);
    return raw ? DatapathConfig.decode(raw).ipcache_gen : 0;
  }

  private writeConfig(c: DatapathConfigInput, ipcacheGen: number): void {
    const value = DatapathConfig.encode({
      proxy_mark: c.proxyMark >>> 0,
      proxy_mark_mask: c.proxyMarkMask >>> 0,
      ipcache_gen: ipcacheGen >>> 0,
      verdict_sample: c.verdictSample >>> 0,
      flags: (c.perPacketLb ? 1 : 0) | (c.sockmapShortcut ? 2 : 0),
      proxy_ipv4: ipv4ToNumber(c.proxyIpv4),
    });
    native.mapUpdate(this.fds.config, u32key(0), value, BPF_ANY);
  }

  setConfig(c: Partial<DatapathConfigInput>): void {
    this.live();
    const next = { ...this.config, ...c };
    ipv4ToNumber(next.proxyIpv4);
    if ((next.proxyMark & ~next.proxyMarkMask) !== 0) throw new RangeError('config.proxyMark: bits outside proxyMarkMask');
    if (!Number.isInteger(next.verdictSample) || next.verdictSample < 0) throw new RangeError('config.verdictSample: not a non-negative integer');
    this.writeConfig(next, this.ipcacheGen());
    this.config = next;
  }

  getConfig(): DatapathConfigInput {
    return { ...this.config };
  }

  private live(): void {
    if (this.closed) throw new DatapathError('MESHD_DATAPATH_CLOSED', 'endpoint manager is closed');
  }

  private linkPath(ifindex: number, dir: 'ingress' | 'egress'): string {
    return join(this.pinDir, 'links', `lxc_${ifindex}_${dir}`);
  }

  /** Attaches (or adopts) the programs on the endpoint's interface and registers it. Idempotent. */
  async addEndpoint(spec: EndpointSpec): Promise<EndpointState> {
    this.live();
    const ifindex = native.ifNameToIndex(spec.ifname);
    const existing = native.mapLookup(this.fds.endpoints, u32key(ifindex), EndpointValue.size);
    let epId: number;
    let flags = 0;
    let policyGen = 0;
    if (existing) {
      const v = EndpointValue.decode(existing);
      epId = v.ep_id;
      flags = v.flags;
      policyGen = v.policy_gen;
    } else {
      const used = new Set<number>();
      for (const [, value] of native.mapDump(this.fds.endpoints)) used.add(EndpointValue.decode(value).ep_id);
      for (const s of this.byEpId.values()) used.add(s.epId);
      epId = 1;
      while (used.has(epId) || this.orphanPolicy.has(epId)) epId += 1;
      if (used.size >= this.capacity.endpoints) {
        throw new DatapathError('MESHD_ENDPOINT_TABLE_FULL', `endpoint table full (${this.capacity.endpoints})`);
      }
    }
    const state: EndpointState = {
      endpointId: spec.endpointId,
      epId,
      ifindex,
      ifname: spec.ifname,
      identity: spec.identity,
      ips: (spec.ips ?? []).map((ip, i) => {
        const p = parsePrefix(ip, `endpoint ${spec.endpointId}.ips[${i}]`);
        if (p.bits !== (p.family === 4 ? 32 : 128)) throw new IpcacheError('MESHD_IPCACHE_BAD_PREFIX', `endpoint ${spec.endpointId}.ips[${i}]: "${ip}" is not a single address`);
        return p.cidr;
      }),
      flags,
      policyGen,
      // Re-adding a tracked endpoint (e.g. its identity changed) keeps what its policy map holds,
      // so the next diff removes stale entries instead of forgetting them.
      revision: this.byEpId.get(epId)?.revision ?? 0,
      entries: this.byEpId.get(epId)?.entries ?? this.orphanPolicy.get(epId) ?? new Map(),
    };
    this.orphanPolicy.delete(epId);
    this.writeEndpoint(state);
    for (const ip of state.ips) native.mapUpdate(this.fds.epIps, ipcacheKey(parsePrefix(ip)), u32key(ifindex), BPF_ANY);
    const attach = spec.attach === false ? [] : ([['ingress', this.fds.fromPod], ['egress', this.fds.toPod]] as const);
    for (const [dir, prog] of attach) {
      const path = this.linkPath(ifindex, dir);
      if (existsSync(path)) {
        const fd = native.objGet(path);
        try {
          native.linkUpdate(fd, prog); // adopt: keep the link, run this build's program
        } finally {
          native.closeFd(fd);
        }
      } else {
        const fd = native.attachTcx(prog, ifindex, dir);
        try {
          native.objPin(fd, path);
        } finally {
          native.closeFd(fd);
        }
      }
    }
    this.byId.set(spec.endpointId, state);
    this.byEpId.set(epId, state);
    return state;
  }

  private writeEndpoint(s: EndpointState): void {
    const v = EndpointValue.encode({ ep_id: s.epId, identity: s.identity, flags: s.flags, policy_gen: s.policyGen >>> 0 });
    native.mapUpdate(this.fds.endpoints, u32key(s.ifindex), v, BPF_ANY);
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
    if (!s) throw new DatapathError('MESHD_ENDPOINT_UNKNOWN', `endpoint ${policy.endpointId} is not attached`);
    const next = policyMapState(policy, { proxyPort: this.proxyPort });
    const ops = diffPolicyMapState(s.entries, next);
    const deletes = ops.filter((o) => o.op === 'delete').length;
    // Puts come before deletes, so what must fit is the peak along the sequence, per map.
    for (const map of ['policy', 'policyExact'] as const) {
      const peak = this.peakCount(ops, s.entries, map);
      if (peak > this.capacity[map]) {
        throw new DatapathError(
          'MESHD_POLICY_MAP_FULL',
          `policy of ${policy.endpointId} (revision ${policy.revision}) needs ${peak} entries in ${map === 'policy' ? 'meshd_policy' : 'meshd_pol_exact'}, capacity ${this.capacity[map]}; previous policy kept`,
          { endpointId: policy.endpointId, revision: policy.revision, map, needed: peak, capacity: this.capacity[map] },
        );
      }
    }
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
      this.writeEndpoint(s);
    }
    const tx = new MapTransaction();
    try {
      for (const op of ops) {
        if (op.op === 'put') {
          const v = op.entry.value;
          tx.put(this.fds[policyMapOf(op.entry.key)], encodePolicyKey(s.epId, op.entry.key), PolicyValue.encode({ verdict: verdictCode(v.verdict), pad: 0, proxy_port: v.proxyPort, rule_id: 0 }));
        } else {
          tx.delete(this.fds[policyMapOf(op.key)], encodePolicyKey(s.epId, op.key), PolicyValue.size);
        }
      }
    } catch (e) {
      tx.rollback();
      s.flags = prevFlags;
      this.writeEndpoint(s);
      throw new DatapathError(
        isMapFull(e) ? 'MESHD_POLICY_MAP_FULL' : 'MESHD_MAP_WRITE_FAILED',
        `policy of ${policy.endpointId} (revision ${policy.revision}) refused by the kernel (${e instanceof Error ? e.message : String(e)}); previous policy restored`,
        { endpointId: policy.endpointId, revision: policy.revision },
      );
    }
    for (const op of ops) {
      const key = op.op === 'put' ? op.entry.key : op.key;
      const id = policyKeyId(key);
      if (op.op === 'put' && !s.entries.has(id)) this.policyCount[policyMapOf(key)] += 1;
      if (op.op === 'delete' && s.entries.has(id)) this.policyCount[policyMapOf(key)] -= 1;
    }
    s.entries = next;
    s.flags = flags;
    s.policyGen = (s.policyGen + 1) >>> 0;
    s.revision = policy.revision;
    this.writeEndpoint(s); // the generation bump makes established connections re-check once
    return { endpointId: s.endpointId, revision: policy.revision, puts: ops.length - deletes, deletes, changed: true };
  }

  private peakCount(ops: ReturnType<typeof diffPolicyMapState>, entries: PolicyMapState, map: PolicyMapName): number {
    let n = this.policyCount[map];
    let peak = n;
    for (const op of ops) {
      if (op.op === 'put') {
        if (policyMapOf(op.entry.key) === map && !entries.has(policyKeyId(op.entry.key))) n += 1;
      } else if (policyMapOf(op.key) === map) {
        n -= 1;
      }
      peak = Math.max(peak, n);
    }
    return peak;
  }

  /**
   * Makes the ipcache equal to `entries` (puts before deletes). If the result
   * does not fit, nothing is written (MESHD_IPCACHE_FULL).
   */
  syncIpcache(entries: readonly IpcacheEntry[]): IpcacheSyncResult {
    this.live();
    const desired = desiredIpcache(entries);
    const current = new Map([...this.ipcache].map(([cidr, v]) => [cidr, v.identity]));
    const ops = diffIpcache(current, desired);
    for (const map of ['ipcache', 'ipcacheHost'] as const) {
      let n = [...this.ipcache.values()].filter((v) => v.map === map).length;
      let peak = n;
      for (const op of ops) {
        if (ipcacheMapOf(op.prefix.bits, op.prefix.family) !== map) continue;
        if (op.op === 'put' && !this.ipcache.has(op.prefix.cidr)) n += 1;
        if (op.op === 'delete') n -= 1;
        peak = Math.max(peak, n);
      }
      if (peak > this.capacity[map]) {
        const name = map === 'ipcache' ? 'meshd_ipcache' : 'meshd_ipc_host';
        throw new IpcacheError('MESHD_IPCACHE_FULL', `ipcache needs ${peak} entries in ${name}, capacity ${this.capacity[map]}; previous ipcache kept`);
      }
    }
    if (ops.length === 0) return { puts: 0, deletes: 0, size: this.ipcache.size };
    const tx = new MapTransaction();
    try {
      for (const op of ops) {
        const fd = this.fds[ipcacheMapOf(op.prefix.bits, op.prefix.family)];
        if (op.op === 'put') tx.put(fd, ipcacheKey(op.prefix), IpcacheValue.encode({ identity: op.identity, flags: 0 }));
        else tx.delete(fd, ipcacheKey(op.prefix), IpcacheValue.size);
      }
    } catch (e) {
      tx.rollback();
      throw new IpcacheError(isMapFull(e) ? 'MESHD_IPCACHE_FULL' : 'MESHD_IPCACHE_BAD_PREFIX', `ipcache update refused by the kernel (${e instanceof Error ? e.message : String(e)}); previous ipcache restored`);
    }
    for (const op of ops) {
      if (op.op === 'put') this.ipcache.set(op.prefix.cidr, { identity: op.identity, map: ipcacheMapOf(op.prefix.bits, op.prefix.family) });
      else this.ipcache.delete(op.prefix.cidr);
    }
    this.writeConfig(this.config, this.ipcacheGen() + 1);
    const deletes = ops.filter((o) => o.op === 'delete').length;
    return { puts: ops.length - deletes, deletes, size: this.ipcache.size };
  }

  ipcacheEntries(): IpcacheEntry[] {
    return [...this.ipcache].map(([prefix, v]) => ({ prefix, identity: v.identity }));
  }

  /** Adds or changes some prefixes, leaving the others (e.g. FQDN-learned addresses). Same guarantees as syncIpcache. */
  upsertIpcache(entries: readonly IpcacheEntry[]): IpcacheSyncResult {
    const next = new Map(this.ipcacheEntries().map((e) => [e.prefix, e.identity]));
    for (const [cidr, d] of desiredIpcache(entries)) next.set(cidr, d.identity);
    return this.syncIpcache([...next].map(([prefix, identity]) => ({ prefix, identity })));
  }

  /** Removes some prefixes (absent ones are ignored). */
  deleteIpcache(prefixes: readonly string[]): IpcacheSyncResult {
    const drop = new Set(prefixes.map((p, i) => parsePrefix(p, `prefixes[${i}]`).cidr));
    return this.syncIpcache(this.ipcacheEntries().filter((e) => !drop.has(e.prefix)));
  }

  /**
   * After a restart, once every live endpoint has been added again: removes
   * what the pins still hold for endpoints that did not come back (their
   * endpoint entry, links, policy entries and conntrack state).
   */
  pruneUnclaimed(): { endpoints: number; policyEntries: number } {
    this.live();
    const claimed = new Set([...this.byId.values()].map((s) => s.ifindex));
    let endpoints = 0;
    for (const [key] of native.mapDump(this.fds.endpoints)) {
      const ifindex = key.readUInt32LE(0);
      if (claimed.has(ifindex)) continue;
      for (const dir of ['ingress', 'egress'] as const) native.objUnpin(this.linkPath(ifindex, dir));
      native.mapDelete(this.fds.endpoints, key);
      endpoints += 1;
    }
    for (const [key, value] of native.mapDump(this.fds.epIps)) {
      if (!claimed.has(value.readUInt32LE(0))) native.mapDelete(this.fds.epIps, key);
    }
    let policyEntries = 0;
    for (const [epId, st] of this.orphanPolicy) {
      for (const e of st.values()) {
        const map = policyMapOf(e.key);
        if (native.mapDelete(this.fds[map], encodePolicyKey(epId, e.key))) policyEntries += 1;
        this.policyCount[map] -= 1;
      }
    }
    const orphans = new Set(this.orphanPolicy.keys());
    this.orphanPolicy.clear();
    for (const [key] of native.mapDump(this.fds.ct)) {
      if (orphans.has(CtKey.decode(key).ep_id)) native.mapDelete(this.fds.ct, key);
    }
    return { endpoints, policyEntries };
  }

  /** Detaches the endpoint's programs and removes its policy entries and conntrack state. */
  removeEndpoint(endpointId: string): void {
    this.live();
    const s = this.byId.get(endpointId);
    if (!s) return;
    for (const dir of ['ingress', 'egress'] as const) native.objUnpin(this.linkPath(s.ifindex, dir));
    for (const ip of s.ips) native.mapDelete(this.fds.epIps, ipcacheKey(parsePrefix(ip)));
    native.mapDelete(this.fds.endpoints, u32key(s.ifindex));
    for (const e of s.entries.values()) {
      const map = policyMapOf(e.key);
      native.mapDelete(this.fds[map], encodePolicyKey(s.epId, e.key));
      this.policyCount[map] -= 1;
    }
    for (const [key] of native.mapDump(this.fds.ct)) {
      if (CtKey.decode(key).ep_id === s.epId) native.mapDelete(this.fds.ct, key);
    }
    this.byId.delete(endpointId);
    this.byEpId.delete(s.epId);
  }

  /** Conntrack entries (decoded), for diagnostics and tests. */
  conntrack(): Array<{ key: ReturnType<typeof CtKey.decode>; entry: ReturnType<typeof CtEntry.decode> }> {
    return native.mapDump(this.fds.ct).map(([k, v]) => ({ key: CtKey.decode(k), entry: CtEntry.decode(v) }));
  }

  /** Counters summed over CPUs: drops by direction and reason, new connections allowed and redirected. */
  metrics(): DatapathMetrics {
    return readMetrics(this.fds.metrics);
  }

  /** Streams flow events; malformed records go to onError. */
  onFlowEvents(cb: (records: FlowRecord[]) => void, onError?: (e: unknown) => void): { close(): void } {
    this.live();
    const reader = new native.RingBufferReader(this.fds.events, (bufs) => {
      const out: FlowRecord[] = [];
      for (const b of bufs) {
        try {
          out.push(decodeFlowEvent(b));
        } catch (e) {
          onError?.(e);
        }
      }
      if (out.length > 0) cb(out);
    });
    this.readers.add(reader);
    return {
      close: () => {
        reader.close();
        this.readers.delete(reader);
      },
    };
  }

  /** Closes fds and readers. Pins (maps and links) stay: enforcement continues. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.readers) r.close();
    this.readers.clear();
    this.obj.close();
  }

  /** Removes every pin under pinDir (detaching the programs). For tests and `meshd` uninstall. */
  static destroyPins(pinDir: string): void {
    const links = join(pinDir, 'links');
    if (existsSync(links)) for (const f of readdirSync(links)) native.objUnpin(join(links, f));
    rmSync(pinDir, { recursive: true, force: true });
  }
}
