/**
 * The few IPv4 facts routing needs: an address as a number, a CIDR with its
 * host bits cleared, membership.
 *
 *   parseRoutingCidr('10.0.1.7/24');      // '10.0.1.0/24'
 *   inCidr4('10.0.1.7', '10.0.1.0/24');   // true
 */
export function parseIpv4(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const o = m.slice(1, 5).map(Number);
  if (o.some((x) => x > 255)) return undefined;
  return o.reduce((acc, x) => acc * 256 + x, 0);
}

export function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** An IPv4 CIDR normalised (host bits cleared), or undefined for anything else (IPv6 included). */
export function parseRoutingCidr(s: string): string | undefined {
  const [addr, len, ...rest] = s.split('/');
  const base = parseIpv4(addr ?? '');
  const bits = Number(len);
  if (base === undefined || rest.length > 0 || !/^\d{1,2}$/.test(len ?? '') || bits > 32) return undefined;
  const size = 2 ** (32 - bits);
  return `${formatIpv4(base - (base % size))}/${bits}`;
}

export function inCidr4(ip: string, cidr: string): boolean {
  const a = parseIpv4(ip);
  const c = parseRoutingCidr(cidr);
  if (a === undefined || c === undefined) return false;
  const [base, bits] = c.split('/');
  const size = 2 ** (32 - Number(bits));
  return a - (a % size) === parseIpv4(base ?? '');
}
