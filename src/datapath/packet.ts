/**
 * Ethernet + IPv4/IPv6 + TCP/UDP/ICMP frames (or any other IP protocol, as
 * eight bytes after the IP header) for running the datapath's programs with
 * BPF_PROG_TEST_RUN (tests and bench/datapath.ts).
 *
 *   const syn = buildFrame({ src: '10.0.0.1', dst: '10.0.0.2', proto: 6, sport: 40000, dport: 80 });
 *   const ping = buildFrame({ src: '10.0.0.1', dst: '10.0.0.2', proto: 1, icmpType: 8, sport: 7, dport: 0 });
 */
import ipaddr from 'ipaddr.js';

export interface FrameSpec {
  src: string;
  dst: string;
  /** 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, or another protocol number (no ports). */
  proto: number;
  /** TCP/UDP ports; for an ICMP echo request `sport` is its identifier, for an echo reply `dport`. */
  sport: number;
  dport: number;
  /** ICMP/ICMPv6 type (the code is 0). */
  icmpType?: number;
  /** TCP flags, SYN by default. */
  tcpFlags?: number;
  payload?: number;
}

export function buildFrame(f: FrameSpec): Buffer {
  const src = ipaddr.parse(f.src);
  const dst = ipaddr.parse(f.dst);
  const v6 = src.kind() === 'ipv6';
  const l3 = v6 ? 40 : 20;
  const l4 = f.proto === 6 ? 20 : 8;
  const buf = Buffer.alloc(14 + l3 + l4 + (f.payload ?? 0));
  buf.writeUInt16BE(v6 ? 0x86dd : 0x0800, 12);
  const o = 14;
  if (v6) {
    buf.writeUInt32BE(0x60000000, o);
    buf.writeUInt16BE(l4 + (f.payload ?? 0), o + 4);
    buf.writeUInt8(f.proto, o + 6);
    buf.writeUInt8(64, o + 7);
    Buffer.from(src.toByteArray()).copy(buf, o + 8);
    Buffer.from(dst.toByteArray()).copy(buf, o + 24);
  } else {
    buf.writeUInt8(0x45, o);
    buf.writeUInt16BE(l3 + l4 + (f.payload ?? 0), o + 2);
    buf.writeUInt8(64, o + 8);
    buf.writeUInt8(f.proto, o + 9);
    Buffer.from(src.toByteArray()).copy(buf, o + 12);
    Buffer.from(dst.toByteArray()).copy(buf, o + 16);
  }
  const p = o + l3;
  if (f.proto === 1 || f.proto === 58) {
    const t = f.icmpType ?? (f.proto === 1 ? 8 : 128);
    buf.writeUInt8(t, p);
    const reply = t === (f.proto === 1 ? 0 : 129);
    buf.writeUInt16BE(reply ? f.dport : f.sport, p + 4);
    return buf;
  }
  if (f.proto !== 6 && f.proto !== 17) return buf;
  buf.writeUInt16BE(f.sport, p);
  buf.writeUInt16BE(f.dport, p + 2);
  if (f.proto === 6) {
    buf.writeUInt8(0x50, p + 12);
    buf.writeUInt8(f.tcpFlags ?? 0x02, p + 13);
  } else {
    buf.writeUInt16BE(l4 + (f.payload ?? 0), p + 4);
  }
  return buf;
}

/** tc return codes (REDIRECT: the program asked for bpf_redirect; a test run only reports it). */
export const TcAct = { OK: 0, SHOT: 2, REDIRECT: 7 } as const;
