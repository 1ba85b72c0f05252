/**
 * The ipcache's keys (CIDR -> LPM key) and the diff between the pinned map's
 * content and the desired prefix -> identity set.
 *
 *   const key = ipcacheKey('10.1.0.0/16');
 *   const ops = diffIpcache(current, desired);
 */
import ipaddr from 'ipaddr.js';
import type { IpcacheEntry } from '../../policy/types.js';
import { MeshdError } from '../../util/errors.js';
import { IpcacheKey } from '../maps.js';

export type IpcacheErrorCode = 'MESHD_IPCACHE_BAD_PREFIX' | 'MESHD_IPCACHE_FULL' | 'MESHD_IPCACHE_DUPLICATE' | 'MESHD_IPCACHE_WRITE_FAILED';

/** A refused prefix (invalid) or a refused write (failed); a refused write leaves the kernel's ipcache as it was. */
export class IpcacheError extends MeshdError {
  declare readonly code: IpcacheErrorCode;

  constructor(
    code: IpcacheErrorCode,
    message: string,
    opts: {
      /** Path of the refused input (`ipcache[3].prefix`, `endpoint ns/pod.ips[0]`). */
      where?: string;
      cause?: unknown;
    } = {},
  ) {
    super(code, message, { kind: code === 'MESHD_IPCACHE_BAD_PREFIX' || code === 'MESHD_IPCACHE_DUPLICATE' ? 'invalid' : 'failed', cause: opts.cause });
    this.where = opts.where;
  }

  readonly where: string | undefined;
}

/** Normalised "addr/bits" (host bits cleared), family and raw address. */
export interface ParsedPrefix {
  cidr: string;
  family: 4 | 6;
  bits: number;
  addr: Buffer; // 16 bytes, IPv4 in the first 4
}

export function parsePrefix(prefix: string, where = 'prefix'): ParsedPrefix {
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = prefix.includes('/') ? ipaddr.parseCIDR(prefix) : [ipaddr.parse(prefix), prefix.includes(':') ? 128 : 32];
  } catch (e) {
    throw new IpcacheError('MESHD_IPCACHE_BAD_PREFIX', `${where}: "${prefix}" is not an IP prefix`, { where, cause: e });
  }
  let [ip, bits] = parsed;
  if (ip instanceof ipaddr.IPv6 && ip.isIPv4MappedAddress()) {
    ip = ip.toIPv4Address();
    bits = Math.max(0, bits - 96);
  }
  const family = ip.kind() === 'ipv4' ? 4 : 6;
  const bytes = Buffer.from(ip.toByteArray());
  for (let i = 0; i < bytes.length; i += 1) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i] = (bytes[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  const addr = Buffer.alloc(16);
  bytes.copy(addr);
  const norm = ipaddr.fromByteArray([...bytes]).toString();
  return { cidr: `${norm}/${bits}`, family, bits, addr };
}

export function ipcacheKey(p: ParsedPrefix): Buffer {
  return IpcacheKey.encode({ prefixlen: 32 + p.bits, family: p.family, pad: Buffer.alloc(3), addr: p.addr });
}

export function prefixFromKey(key: Buffer): ParsedPrefix {
  const k = IpcacheKey.decode(key);
  const family = k.family === 6 ? 6 : 4;
  const bits = k.prefixlen - 32;
  const raw = family === 4 ? [...k.addr.subarray(0, 4)] : [...k.addr];
  return { cidr: `${ipaddr.fromByteArray(raw).toString()}/${bits}`, family, bits, addr: k.addr };
}

export type IpcacheOp = { op: 'put'; prefix: ParsedPrefix; identity: number } | { op: 'delete'; prefix: ParsedPrefix };

/** A desired ipcache entry: its parsed prefix and identity. */
export interface DesiredEntry {
  prefix: ParsedPrefix;
  identity: number;
}

/** Validates the desired set (errors name the index) and keys it by normalised CIDR. `parse` lets a caller reuse parses (PrefixCache). */
export function desiredIpcache(entries: readonly IpcacheEntry[], parse: (prefix: string, where: string) => ParsedPrefix = parsePrefix): Map<string, DesiredEntry> {
  const out = new Map<string, DesiredEntry>();
  entries.forEach((e, i) => {
    const prefix = parse(e.prefix, `ipcache[${i}].prefix`);
    if (!Number.isInteger(e.identity) || e.identity < 0 || e.identity > 0xffffffff) {
      throw new IpcacheError('MESHD_IPCACHE_BAD_PREFIX', `ipcache[${i}].identity: ${e.identity} is not a u32`, { where: `ipcache[${i}].identity` });
    }
    const prev = out.get(prefix.cidr);
    if (prev && prev.identity !== e.identity) {
      throw new IpcacheError('MESHD_IPCACHE_DUPLICATE', `ipcache[${i}]: ${prefix.cidr} maps to both ${prev.identity} and ${e.identity}`, { where: `ipcache[${i}]` });
    }
    out.set(prefix.cidr, { prefix, identity: e.identity });
  });
  return out;
}

/**
 * Parses each prefix string once while it stays in the desired set. The
 * desired set is recomputed after every change, but only the few addresses
 * that changed are new: the rest are map lookups instead of ipaddr.js
 * parses. The cache holds exactly the strings of the last accepted set, so
 * it never grows past the ipcache.
 *
 *   const cache = new PrefixCache();
 *   const desired = cache.desired(entries);   // throws as desiredIpcache does; the cache is kept then
 */
export class PrefixCache {
  private cache = new Map<string, ParsedPrefix>();
  /** Prefix strings parsed so far (each is parsed once while it stays). */
  parses = 0;

  desired(entries: readonly IpcacheEntry[]): Map<string, DesiredEntry> {
    const next = new Map<string, ParsedPrefix>();
    const out = desiredIpcache(entries, (s, where) => {
      let p = this.cache.get(s) ?? next.get(s);
      if (!p) {
        p = parsePrefix(s, where);
        this.parses += 1;
      }
      next.set(s, p);
      return p;
    });
    this.cache = next;
    return out;
  }

  get size(): number {
    return this.cache.size;
  }
}

/** Puts (new and changed) before deletes: a prefix never goes through "unknown" (world) while it changes. */
export function diffIpcache(current: ReadonlyMap<string, number | DesiredEntry>, desired: ReadonlyMap<string, DesiredEntry>): IpcacheOp[] {
  const ops: IpcacheOp[] = [];
  for (const [cidr, d] of desired) {
    const have = current.get(cidr);
    if ((typeof have === 'number' ? have : have?.identity) !== d.identity) ops.push({ op: 'put', prefix: d.prefix, identity: d.identity });
  }
  for (const [cidr, have] of current) {
    if (!desired.has(cidr)) ops.push({ op: 'delete', prefix: typeof have === 'number' ? parsePrefix(cidr) : have.prefix });
  }
  return ops;
}
