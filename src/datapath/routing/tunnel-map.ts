/**
 * The one writer of meshd_tunnel (bpf/lib/tunnel.h): another node's pod
 * CIDR -> that node's address and the local tunnel device. Writes the
 * difference against what the map holds (read back, so a restart with the
 * same nodes writes nothing), puts before deletes.
 *
 *   const m = TunnelMap.open(pinDir);
 *   m.sync([{ cidr: '10.0.2.0/24', endpoint: '192.168.50.12' }], tunnelIfindex);
 *   m.sync([], 0);                 // native mode: empty
 *   m.close();
 */
import { join } from 'node:path';
import { native } from '../../../native/index.js';
import { IpcacheKey, TunnelValue } from '../maps.js';
import { formatIpv4, parseIpv4 } from './cidr.js';

export interface TunnelEntry {
  cidr: string;
  endpoint: string;
}

function keyOf(cidr: string): Buffer {
  const [addr, bits] = cidr.split('/');
  const a = Buffer.alloc(16);
  a.writeUInt32BE(parseIpv4(addr ?? '') ?? 0, 0);
  return IpcacheKey.encode({ prefixlen: 32 + Number(bits), family: 4, pad: Buffer.alloc(3), addr: a });
}

function cidrOf(key: Buffer): string {
  const k = IpcacheKey.decode(key);
  return `${formatIpv4(k.addr.readUInt32BE(0))}/${k.prefixlen - 32}`;
}

export class TunnelMap {
  private constructor(private readonly fd: number) {}

  /** The map as lxc.o pinned it under pinDir. */
  static open(pinDir: string): TunnelMap {
    return new TunnelMap(native.objGet(join(pinDir, 'meshd_tunnel')));
  }

  entries(): Array<TunnelEntry & { ifindex: number }> {
    return native.mapDump(this.fd).map(([k, v]) => {
      const t = TunnelValue.decode(v);
      return { cidr: cidrOf(k), endpoint: formatIpv4(t.endpoint), ifindex: t.ifindex };
    });
  }

  sync(want: readonly TunnelEntry[], ifindex: number): { puts: number; deletes: number } {
    const have = new Map(this.entries().map((e) => [e.cidr, e]));
    const wanted = new Set(want.map((e) => e.cidr));
    let puts = 0;
    let deletes = 0;
    for (const e of want) {
      const h = have.get(e.cidr);
      if (h && h.endpoint === e.endpoint && h.ifindex === ifindex) continue;
      native.mapUpdate(this.fd, keyOf(e.cidr), TunnelValue.encode({ endpoint: parseIpv4(e.endpoint) ?? 0, ifindex }));
      puts++;
    }
    for (const cidr of have.keys()) {
      if (wanted.has(cidr)) continue;
      native.mapDelete(this.fd, keyOf(cidr));
      deletes++;
    }
    return { puts, deletes };
  }

  close(): void {
    native.closeFd(this.fd);
  }
}
