/**
 * The endpoint table (meshd_endpoints, by ifindex: ep_id, identity,
 * default-deny flags, policy generation) and the pod address index
 * (meshd_ep_ips, address → ifindex). ep_id is the short number that prefixes
 * the endpoint's policy keys and conntrack entries; it is allocated here and
 * kept across restarts by reading the table back.
 *
 *   const table = new EndpointTable(fds, capacity.endpoints);
 *   const epId = table.get(ifindex)?.epId ?? table.allocateEpId(tracked, reserved);
 *   table.put(ifindex, { epId, identity, flags, policyGen });
 *
 * Blocking (bpf() syscalls); throws MESHD_ENDPOINT_TABLE_FULL from
 * allocateEpId before anything is written.
 */
import { BPF_ANY, native, u32 } from '../../../native/index.js';
import { EndpointValue } from '../maps.js';
import { DatapathError } from './errors.js';
import { ipcacheKey, parsePrefix } from './ipcache.js';

export interface EndpointRow {
  epId: number;
  identity: number;
  flags: number;
  policyGen: number;
}

export class EndpointTable {
  constructor(
    private readonly fds: { endpoints: number; epIps: number },
    readonly capacity: number,
  ) {}

  get(ifindex: number): EndpointRow | undefined {
    const raw = native.mapLookup(this.fds.endpoints, u32(ifindex), EndpointValue.size);
    if (!raw) return undefined;
    const v = EndpointValue.decode(raw);
    return { epId: v.ep_id, identity: v.identity, flags: v.flags, policyGen: v.policy_gen };
  }

  put(ifindex: number, row: EndpointRow): void {
    const v = EndpointValue.encode({ ep_id: row.epId, identity: row.identity, flags: row.flags, policy_gen: row.policyGen >>> 0 });
    native.mapUpdate(this.fds.endpoints, u32(ifindex), v, BPF_ANY);
  }

  delete(ifindex: number): boolean {
    return native.mapDelete(this.fds.endpoints, u32(ifindex));
  }

  /** Interfaces the table holds a row for (including rows of a previous agent). */
  ifindexes(): number[] {
    return native.mapDump(this.fds.endpoints).map(([key]) => key.readUInt32LE(0));
  }

  /**
   * The smallest ep_id used neither by a row, nor by `tracked` (endpoints known
   * in memory), nor `reserved` (ids whose policy entries are still pinned).
   */
  allocateEpId(tracked: Iterable<number>, reserved: (epId: number) => boolean): number {
    const used = new Set<number>(tracked);
    for (const [, value] of native.mapDump(this.fds.endpoints)) used.add(EndpointValue.decode(value).ep_id);
    if (used.size >= this.capacity) {
      throw new DatapathError('MESHD_ENDPOINT_TABLE_FULL', `endpoint table full (${this.capacity})`, { capacity: this.capacity });
    }
    let epId = 1;
    while (used.has(epId) || reserved(epId)) epId += 1;
    return epId;
  }

  /** Records the pod's addresses (single-address CIDRs) as belonging to ifindex. */
  putAddresses(ifindex: number, cidrs: readonly string[]): void {
    for (const cidr of cidrs) native.mapUpdate(this.fds.epIps, ipcacheKey(parsePrefix(cidr)), u32(ifindex), BPF_ANY);
  }

  deleteAddresses(cidrs: readonly string[]): void {
    for (const cidr of cidrs) native.mapDelete(this.fds.epIps, ipcacheKey(parsePrefix(cidr)));
  }

  /** Removes every address whose interface is not in `claimed`; returns how many. */
  pruneAddresses(claimed: ReadonlySet<number>): number {
    let n = 0;
    for (const [key, value] of native.mapDump(this.fds.epIps)) {
      if (!claimed.has(value.readUInt32LE(0)) && native.mapDelete(this.fds.epIps, key)) n += 1;
    }
    return n;
  }
}
