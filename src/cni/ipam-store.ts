/**
 * meshd's own IPAM: hands out IPv4 addresses from the node's pod CIDR and
 * remembers them on disk so that every short-lived plugin process sees the
 * same pool.
 *
 * Layout: one directory per (network, subnet) under the state dir, one file
 * per reserved address, named by the address, holding "<containerID>\n<ifname>\n".
 * A reservation is taken by writing the owner to a private temporary file
 * and hard-linking it to the address's name: link(2) fails with EEXIST when
 * the name exists, so of two concurrent ADDs trying the same address exactly
 * one wins and the other moves on, and an address file is never seen empty
 * or half-written. The address file is the lock on that address; no process
 * ever holds a lock across a crash, so there is no stale lock to break.
 * `last_reserved` is only a hint where to start looking (so a released
 * address is not handed out again at once); losing a race on it, or finding
 * it unreadable, is harmless.
 *
 * A corrupt address file (an owner that does not parse: disk damage, a hand
 * edit) is never deleted, because the address may still be in use by a pod
 * and handing it out again would give two pods one address. Instead it is
 * quarantined: its content is copied to `<address>.corrupt-<ISO time>` for
 * the operator, the address file is replaced (atomically, so the address is
 * reserved at every instant) by a marker with no owner, and the caller is
 * told with a StateFileCorruptError (MESHD_STATE_FILE_CORRUPT) naming both
 * paths. A quarantined address is skipped by allocate, release and GC; the
 * operator frees it by deleting the address file once no pod uses it.
 *
 *   const pool = new IpamStore(stateDir, 'meshd', parsePool('10.244.1.0/24'), { onCorrupt: (e) => log(e.message) });
 *   const r = pool.allocate({ containerId, ifname });   // { address: '10.244.1.2/32', gateway: '10.244.1.1' }
 *   pool.release({ containerId, ifname });
 */
import { closeSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CniCode, CniError } from './cni-spec.js';
import { EndpointKeySchema } from './endpoint-api.js';
import { errno, readdirIfExists } from '../util/fs-errors.js';
import { corruptPath, StateFileCorruptError, warnCorrupt } from '../util/state-file.js';

export interface Owner {
  containerId: string;
  ifname: string;
}

export interface Pool {
  /** Network address as a 32-bit unsigned integer. */
  base: number;
  prefix: number;
  gateway: number;
  cidr: string;
}

export interface Reservation extends Owner {
  ip: string;
}

const HINT = 'last_reserved';
/** First line of a quarantined address file; never a container ID (those start with [A-Za-z0-9]). */
const QUARANTINED = '!quarantined';

/** The owner in an address file's content, or undefined when it does not parse. */
function parseOwner(text: string): Owner | undefined {
  const m = /^([^\n]*)\n([^\n]*)\n$/.exec(text);
  const key = m ? EndpointKeySchema.safeParse({ containerId: m[1], ifname: m[2] }) : undefined;
  return key?.success ? key.data : undefined;
}

export function ipv4ToInt(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i += 1) {
    const octet = Number(m[i]);
    if (octet > 255) return undefined;
    n = n * 256 + octet;
  }
  return n;
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/**
 * Parses an IPv4 pod CIDR (prefix /8 to /30) and an optional gateway (default:
 * the first host). Throws CniError 7 naming the field on bad input.
 */
export function parsePool(cidr: string, gateway?: string, field = 'ipam.subnet'): Pool {
  const [addr, len] = cidr.split('/');
  const ip = addr === undefined ? undefined : ipv4ToInt(addr);
  const prefix = len !== undefined && /^\d+$/.test(len) ? Number(len) : NaN;
  if (ip === undefined || !(prefix >= 8 && prefix <= 30)) {
    throw new CniError(
      CniCode.INVALID_CONFIG,
      'MESHD_CNI_BAD_CONFIG',
      `network configuration: ${field} "${cidr}" is not an IPv4 CIDR with a prefix between /8 and /30`,
    );
  }
  const size = 2 ** (32 - prefix);
  const base = ip - (ip % size);
  let gw = base + 1;
  if (gateway !== undefined) {
    const g = ipv4ToInt(gateway);
    if (g === undefined || g <= base || g >= base + size - 1) {
      throw new CniError(
        CniCode.INVALID_CONFIG,
        'MESHD_CNI_BAD_CONFIG',
        `network configuration: ipam.gateway "${gateway}" is not a host address inside ${intToIpv4(base)}/${prefix}`,
      );
    }
    gw = g;
  }
  return { base, prefix, gateway: gw, cidr: `${intToIpv4(base)}/${prefix}` };
}

export class IpamStore {
  readonly dir: string;
  private readonly onCorrupt: (e: StateFileCorruptError) => void;

  constructor(
    stateDir: string,
    network: string,
    readonly pool: Pool,
    opts: { onCorrupt?: (e: StateFileCorruptError) => void } = {},
  ) {
    this.dir = join(stateDir, 'ipam', encodeURIComponent(network), pool.cidr.replace('/', '_'));
    this.onCorrupt = opts.onCorrupt ?? warnCorrupt;
  }

  private ensureDir(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Every reservation currently on disk that has an owner (quarantined addresses are not listed). */
  list(): Reservation[] {
    const names = readdirIfExists(this.dir);
    const out: Reservation[] = [];
    for (const name of names) {
      if (ipv4ToInt(name) === undefined) continue;
      const owner = this.readOwner(name);
      if (owner !== undefined && owner !== QUARANTINED) out.push({ ip: name, ...owner });
    }
    return out;
  }

  /** Addresses held by a quarantine marker (see the module comment). */
  quarantined(): string[] {
    return readdirIfExists(this.dir).filter((name) => ipv4ToInt(name) !== undefined && this.readOwner(name) === QUARANTINED);
  }

  /** The owner of `ip`, QUARANTINED, or undefined when it is free. Quarantines a corrupt file on the way. */
  private readOwner(ip: string): Owner | typeof QUARANTINED | undefined {
    const file = join(this.dir, ip);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if (errno(e) === 'ENOENT') return undefined;
      throw e;
    }
    if (text.startsWith(`${QUARANTINED}\n`)) return QUARANTINED;
    const owner = parseOwner(text);
    if (owner) return owner;
    this.quarantine(file, text);
    return QUARANTINED;
  }

  private quarantine(file: string, text: string): void {
    let aside: string;
    for (;;) {
      aside = corruptPath(file);
      try {
        writeFileSync(aside, text, { mode: 0o600, flag: 'wx' });
        break;
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw e; // else another plugin process took that name a moment ago
      }
    }
    const tmp = join(this.dir, `.quarantine.${process.pid}`);
    writeFileSync(tmp, `${QUARANTINED}\n${aside}\n`, { mode: 0o600 });
    renameSync(tmp, file); // replaces the name in one step: the address is never free
    this.onCorrupt(
      new StateFileCorruptError(
        file,
        aside,
        `IPAM reservation without a readable owner; the address stays reserved (quarantined) until an operator deletes ${file}`,
      ),
    );
  }

  /** Reserves one free address for `owner`. Throws CniError 100 when the pool is full. */
  allocate(owner: Owner): { address: string; gateway: string } {
    this.ensureDir();
    const size = 2 ** (32 - this.pool.prefix);
    const first = this.pool.base + 1;
    const last = this.pool.base + size - 2; // the broadcast address is never handed out
    const count = last - first + 1;
    let start = first;
    try {
      const hint = ipv4ToInt(readFileSync(join(this.dir, HINT), 'utf8').trim());
      if (hint !== undefined && hint >= first && hint <= last) start = hint + 1;
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw e;
    }
    const taken = new Set(readdirSync(this.dir));
    for (let i = 0; i < count; i += 1) {
      const n = first + ((start - first + i) % count);
      if (n === this.pool.gateway) continue;
      const ip = intToIpv4(n);
      if (taken.has(ip)) continue;
      if (!this.reserve(ip, owner)) continue; // another ADD won this address
      this.writeHint(ip);
      return { address: `${ip}/32`, gateway: intToIpv4(this.pool.gateway) };
    }
    throw new CniError(
      CniCode.IPAM_EXHAUSTED,
      'MESHD_CNI_IPAM_EXHAUSTED',
      `IPAM: no free address left in pool ${this.pool.cidr} (${count - 1} addresses, all reserved)`,
    );
  }

  /** Creates the address file with its content in one step; false when it exists already. */
  private reserve(ip: string, owner: Owner): boolean {
    const tmp = join(this.dir, `.reserve.${process.pid}`);
    writeFileSync(tmp, `${owner.containerId}\n${owner.ifname}\n`, { mode: 0o600 });
    try {
      linkSync(tmp, join(this.dir, ip));
      return true;
    } catch (e) {
      if (errno(e) === 'EEXIST') return false;
      throw e;
    } finally {
      unlinkSync(tmp);
    }
  }

  private writeHint(ip: string): void {
    const tmp = join(this.dir, `.${HINT}.${process.pid}`);
    try {
      const fd = openSync(tmp, 'w', 0o600);
      try {
        writeSync(fd, `${ip}\n`);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, join(this.dir, HINT));
    } catch {
      // Only a hint: a failure costs a longer scan next time, nothing else.
      try {
        unlinkSync(tmp);
      } catch {
        // already gone
      }
    }
  }

  /**
   * Releases what `owner` holds. With `ips` only those addresses are looked
   * at; without, the whole pool is scanned. An address owned by someone else
   * is never removed. Returns the released addresses; releasing nothing is fine.
   */
  release(owner: Owner, ips?: readonly string[]): string[] {
    const candidates = ips ?? this.list().map((r) => r.ip);
    const released: string[] = [];
    for (const ip of candidates) {
      if (!this.holds(owner, ip)) continue;
      try {
        unlinkSync(join(this.dir, ip));
        released.push(ip);
      } catch (e) {
        if (errno(e) !== 'ENOENT') throw e;
      }
    }
    return released;
  }

  /** True when `ip` is reserved by `owner`. */
  holds(owner: Owner, ip: string): boolean {
    const held = this.readOwner(ip);
    return held !== undefined && held !== QUARANTINED && held.containerId === owner.containerId && held.ifname === owner.ifname;
  }
}
