/**
 * CIDR labels. An IP prefix's identity carries one `cidr:` label for the
 * prefix itself and one for every shorter prefix containing it (down to /0),
 * plus `reserved:world`; a CIDR selector is then a plain label requirement:
 * `10.0.0.0/8 except 10.96.0.0/12` = has `cidr:10.0.0.0/8`, lacks
 * `cidr:10.96.0.0/12`.
 */
import ipaddr from 'ipaddr.js';
import type { Label } from './labels.js';
import { reservedLabel } from './reserved.js';

export interface Prefix {
  /** Normalised network address (host bits cleared). */
  addr: string;
  bits: number;
  family: 4 | 6;
}

export function formatPrefix(p: Prefix): string {
  return `${p.addr}/${p.bits}`;
}

/** Parses "10.0.0.0/8" or a bare address (→ /32 or /128); undefined when invalid. */
export function parsePrefix(text: string): Prefix | undefined {
  const slash = text.indexOf('/');
  if (!isIp(slash < 0 ? text : text.slice(0, slash))) return undefined;
  if (slash >= 0 && !/^\d{1,3}$/.test(text.slice(slash + 1))) return undefined;
  try {
    if (text.includes('/')) {
      const [addr, bits] = ipaddr.parseCIDR(text);
      return normalise(addr, bits);
    }
    const addr = ipaddr.parse(text);
    return normalise(addr, addr.kind() === 'ipv4' ? 32 : 128);
  } catch {
    return undefined;
  }
}

function normalise(addr: ipaddr.IPv4 | ipaddr.IPv6, bits: number): Prefix {
  const bytes = addr.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i] = (bytes[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  const family = addr.kind() === 'ipv4' ? 4 : 6;
  const net = ipaddr.fromByteArray(bytes);
  return { addr: net.toString(), bits, family };
}

/** Every prefix containing p, from p itself down to /0. */
export function enclosingPrefixes(p: Prefix): Prefix[] {
  const base = ipaddr.parse(p.addr);
  const out: Prefix[] = [];
  for (let b = p.bits; b >= 0; b--) out.push(normalise(base, b));
  return out;
}

export function cidrLabel(p: Prefix): Label {
  return { source: 'cidr', key: formatPrefix(p), value: '' };
}

/** Labels of the identity for prefix p. */
export function cidrIdentityLabels(p: Prefix): Label[] {
  return [...enclosingPrefixes(p).map(cidrLabel), reservedLabel('world')];
}

export function prefixContains(outer: Prefix, ip: string): boolean {
  try {
    const a = ipaddr.parse(ip);
    const o = ipaddr.parse(outer.addr);
    if (a.kind() !== o.kind()) return false;
    return a.match(o, outer.bits);
  } catch {
    return false;
  }
}

/** Strict address syntax: dotted quad for IPv4 (no "10" or "010.1"), any valid IPv6 form. */
export function isIp(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text) || ipaddr.IPv6.isValid(text);
}
