/**
 * Transparent sockets (native/src/transparent.cc): what a transparent DNS
 * proxy needs and Node's dgram/net lack — the original destination of a
 * datagram the datapath assigned to the proxy (IP_RECVORIGDSTADDR), sending
 * from a foreign address (IP_TRANSPARENT), SO_MARK on upstream legs, and a
 * transparent TCP listener.
 *
 *   const s = openUdpSocket({ address: '0.0.0.0', port: 10053, recvOrigDst: true }, (msgs) => {
 *     for (const m of msgs) sendFrom(answer, { srcAddress: m.dstAddress!, srcPort: m.dstPort!, dstAddress: m.srcAddress, dstPort: m.srcPort });
 *   });
 *   s.close();                               // idempotent
 *   const fd = native.tcpListen({ address: '0.0.0.0', port: 10053, transparent: true });
 *   net.createServer(onConn).listen({ fd });  // accepted sockets' localAddress = original destination
 *   const up = new net.Socket({ fd: await native.tcpConnect({ address, port: 53, mark }) });
 *
 * Datagrams are read on the event loop when libuv reports the fd readable
 * (never a blocking read), up to 64 per callback. Errors carry errno/code.
 */
import { native } from './index.js';

export interface UdpSocketOptions {
  address: string;
  port: number;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT: bind or send from an address this host does not own. */
  transparent?: boolean;
  /** IP_RECVORIGDSTADDR / IPV6_RECVORIGDSTADDR: report each datagram's original destination. */
  recvOrigDst?: boolean;
  /** SO_MARK on everything this socket sends (0: none). */
  mark?: number;
  reuseAddr?: boolean;
  /**
   * Receive buffer in bytes (SO_RCVBUFFORCE, else SO_RCVBUF capped by net.core.rmem_max; default: the
   * kernel's). What arrives while the event loop is busy waits here; what does not fit is dropped (drops()).
   */
  recvBuffer?: number;
}

export interface Datagram {
  data: Buffer;
  /** The datagram was larger than 64 KiB and cut (MSG_TRUNC). */
  truncated: boolean;
  srcAddress: string;
  srcPort: number;
  /** The original destination (null when the socket does not ask for it or the kernel gave none). */
  dstAddress: string | null;
  dstPort: number | null;
}

export interface UdpSocketHandle {
  /** Bytes sent; throws an Error with errno (EAGAIN when the send buffer is full). */
  send(data: Buffer, address: string, port: number): number;
  address(): { address: string; port: number };
  /** The receive buffer as the kernel counts it (twice the bytes asked for: it includes overhead). */
  receiveBuffer(): number;
  /** Datagrams the kernel dropped on this socket so far because its receive buffer was full (SO_MEMINFO; 0 once closed). */
  drops(): number;
  /** Idempotent. */
  close(): void;
  /** Do (not) keep the process alive while open. */
  ref(): void;
  unref(): void;
}

export interface SendFromOptions {
  srcAddress: string;
  srcPort: number;
  dstAddress: string;
  dstPort: number;
  mark?: number;
}

export function openUdpSocket(opts: UdpSocketOptions, onMessages: (messages: Datagram[]) => void): UdpSocketHandle {
  return new native.UdpSocket(opts, onMessages);
}

/** One datagram from a foreign address and port (a transparent socket bound to it for the one send). */
export function sendFrom(data: Buffer, to: SendFromOptions): number {
  return native.sendFrom(data, to);
}
