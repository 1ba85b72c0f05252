/**
 * Address ranges of LB IPAM pools as numbers: one `IpRange` per pool block,
 * IPv4 and IPv6 alike (bigint), so counting, overlap and "next free address"
 * are arithmetic rather than string handling.
 *
 *   const r = blockRange({ cidr: '10.0.10.0/24' }, { allowFirstLast: false }); // 10.0.10.1 … 10.0.10.254
 *   rangeSize(r);                     // 254n
 *   ipToBigint('10.0.10.7');          // { family: 4, value: 168430087n }
 *   bigintToIp(4, 168430087n);        // '10.0.10.7'
 */
import ipaddr from 'ipaddr.js';
import { isIp } from '../identity/cidr.js';

export type Family = 4 | 6;

export interface IpRange {
  family: Family;
  /** First and last usable address, inclusive. */
  first: bigint;
  last: bigint;
  /** How the block was written, for messages ("10.0.10.0/24", "20.0.20.100-20.0.20.200"). */
  text: string;
}

export interface IpValue {
  family: Family;
  value: bigint;
}

/** A parsed address, or undefined when `text` is not one (strict syntax, as isIp). */
export function ipToBigint(text: string): IpValue | undefined {
  if (!isIp(text)) return undefined;
  const a = ipaddr.parse(text);
  // An IPv4-mapped IPv6 address stays IPv6: Kubernetes keeps the families apart as written.
  let v = 0n;
  for (const b of a.toByteArray()) v = (v << 8n) | BigInt(b);
  return { family: a.kind() === 'ipv4' ? 4 : 6, value: v };
}

export function bigintToIp(family: Family, value: bigint): string {
  const n = family === 4 ? 4 : 16;
  const bytes: number[] = new Array<number>(n).fill(0);
  let v = value;
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

/** The canonical text of an address ("2004:0::1" → "2004::1"); the input when it is not an address. */
export function canonicalIp(text: string): string {
  const v = ipToBigint(text);
  return v ? bigintToIp(v.family, v.value) : text;
}

const familyBits = (f: Family): number => (f === 4 ? 32 : 128);

export type BlockError = 'INVALID_CIDR' | 'INVALID_ADDRESS' | 'MIXED_FAMILIES' | 'START_AFTER_STOP' | 'EMPTY_BLOCK';

/**
 * One pool block as a range. A CIDR's network and broadcast addresses are
 * usable unless `allowFirstLast` is false (Cilium's allowFirstLastIPs: No);
 * /31 and /32 (/127 and /128) are always usable whole. A start without stop
 * is the single address.
 */
export function blockRange(b: { cidr?: string | undefined; start?: string | undefined; stop?: string | undefined }, o: { allowFirstLast: boolean }): IpRange | BlockError {
  if (b.cidr !== undefined && b.cidr !== '') {
    const m = /^(.+)\/(\d{1,3})$/.exec(b.cidr);
    const base = m?.[1] !== undefined ? ipToBigint(m[1]) : undefined;
    const bits = Number(m?.[2]);
    if (!base || !Number.isInteger(bits) || bits > familyBits(base.family)) return 'INVALID_CIDR';
    const host = BigInt(familyBits(base.family) - bits);
    const first = (base.value >> host) << host;
    const last = first + (1n << host) - 1n;
    const trim = !o.allowFirstLast && host > 1n;
    return { family: base.family, first: trim ? first + 1n : first, last: trim ? last - 1n : last, text: b.cidr };
  }
  const start = b.start !== undefined && b.start !== '' ? ipToBigint(b.start) : undefined;
  if (!start) return 'INVALID_ADDRESS';
  const stop = b.stop !== undefined && b.stop !== '' ? ipToBigint(b.stop) : start;
  if (!stop) return 'INVALID_ADDRESS';
  if (stop.family !== start.family) return 'MIXED_FAMILIES';
  if (stop.value < start.value) return 'START_AFTER_STOP';
  return { family: start.family, first: start.value, last: stop.value, text: b.stop ? `${b.start}-${b.stop}` : `${b.start}` };
}

export const rangeSize = (r: IpRange): bigint => r.last - r.first + 1n;

export const rangeContains = (r: IpRange, ip: IpValue): boolean => r.family === ip.family && ip.value >= r.first && ip.value <= r.last;

export const rangesOverlap = (a: IpRange, b: IpRange): boolean => a.family === b.family && a.first <= b.last && b.first <= a.last;
