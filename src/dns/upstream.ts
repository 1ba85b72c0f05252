/**
 * The DNS proxy's upstream legs. UDP: one socket per (client identity,
 * address family) carrying SO_MARK = proxyUpstreamMark(identity), so the
 * resolver's datapath judges the pod's identity rather than the node's;
 * every query gets its own message id on that socket and an answer is taken
 * only from the address and port it was sent to. TCP: one marked connection
 * per query (DNS over TCP is rare and used for large answers). Transparent
 * mode (dnsProxy.enableTransparentMode): the legs leave from the client pod's
 * own address and port, see TransparentUdp.
 *
 *   const up = new Upstreams({ timeoutMs: 5000 });
 *   const answer = await up.udp(wire, { address: '10.0.0.10', port: 53, mark });   // id already restored
 *   up.close();
 */
import net from 'node:net';
import { isIPv6 } from 'node:net';
import { native } from '../../native/index.js';
import { type Datagram, openUdpSocket, type UdpSocketHandle, type UdpSocketOptions } from '../../native/transparent.js';
import { MeshdError } from '../util/errors.js';
import { MAX_MESSAGE, withId } from './message.js';

/**
 * Receive buffer of the proxy's UDP sockets (the listeners and the upstream legs): what arrives while
 * the event loop is busy (a GC pause, a burst) waits here instead of being dropped. 1 MiB holds about
 * 100 ms at 10,000 queries per second, five times the default. Not more: when the proxy cannot keep up
 * at all, a larger buffer only turns drops into answers that come after the client gave up (seen: 1.5 s
 * queued with 4 MiB on a starved machine).
 */
export const UDP_RECV_BUFFER = 1 << 20;

/** MESHD_DNS_UPSTREAM_TIMEOUT: no answer in time; MESHD_DNS_UPSTREAM_FAILED: the leg broke (errno in the cause). */
export class DnsUpstreamError extends MeshdError {
  constructor(code: 'MESHD_DNS_UPSTREAM_TIMEOUT' | 'MESHD_DNS_UPSTREAM_FAILED', message: string, cause?: unknown) {
    super(code, message, { kind: 'unavailable', cause });
  }
}

export interface UpstreamTarget {
  address: string;
  port: number;
  /** SO_MARK of the leg (0: none). */
  mark: number;
}

interface Pending {
  address: string;
  port: number;
  clientId: number;
  resolve: (b: Buffer) => void;
  reject: (e: unknown) => void;
  /** performance.now() after which the query has timed out. */
  deadline: number;
}

/**
 * Queries in flight on one socket, by upstream message id. Timeouts are found by one timer per socket
 * (every timeoutMs/10, at most 250 ms) rather than one timer per query: every query has the same
 * timeout, so the Map's insertion order is deadline order and a sweep stops at the first live one.
 */
export class InFlight {
  private readonly pending = new Map<number, Pending>();
  private nextId = Math.floor(Math.random() * 0x10000);
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly timeoutMs: number) {}

  get size(): number {
    return this.pending.size;
  }

  /** Registers a query; `send(id)` puts it on the wire with that upstream id. */
  add(t: { address: string; port: number }, clientId: number, send: (id: number) => void): Promise<Buffer> {
    if (this.pending.size >= 0xffff) return Promise.reject(new DnsUpstreamError('MESHD_DNS_UPSTREAM_FAILED', 'too many queries in flight on one upstream socket'));
    let id = this.nextId;
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    this.nextId = (id + 1) & 0xffff;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, { address: t.address, port: t.port, clientId, resolve, reject, deadline: performance.now() + this.timeoutMs });
      try {
        send(id);
      } catch (e) {
        this.pending.delete(id);
        reject(new DnsUpstreamError('MESHD_DNS_UPSTREAM_FAILED', `cannot send to ${t.address}:${t.port}`, e));
        return;
      }
      this.timer ??= setInterval(() => this.expire(), Math.min(250, Math.max(1, this.timeoutMs / 10)));
    });
  }

  /** An answer: taken only from the address and port it was asked of (an off-path sender would have to guess id and port). */
  answer(m: Datagram): void {
    if (m.data.length < 12 || m.truncated) return;
    const id = m.data.readUInt16BE(0);
    const p = this.pending.get(id);
    if (!p || p.address !== m.srcAddress || p.port !== m.srcPort) return;
    this.pending.delete(id);
    p.resolve(withId(m.data, p.clientId));
  }

  private expire(): void {
    const now = performance.now();
    for (const [id, p] of this.pending) {
      if (p.deadline > now) break;
      this.pending.delete(id);
      p.reject(new DnsUpstreamError('MESHD_DNS_UPSTREAM_TIMEOUT', `no answer from ${p.address}:${p.port} within ${this.timeoutMs} ms`));
    }
    if (this.pending.size === 0) this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  close(): void {
    this.stopTimer();
    for (const p of this.pending.values()) p.reject(new DnsUpstreamError('MESHD_DNS_UPSTREAM_FAILED', 'proxy stopped'));
    this.pending.clear();
  }
}

/** A marked UDP socket and its queries in flight. */
class MarkedUdp {
  readonly socket: UdpSocketHandle;
  private readonly inFlight: InFlight;

  constructor(bind: UdpSocketOptions, timeoutMs: number) {
    this.inFlight = new InFlight(timeoutMs);
    this.socket = openUdpSocket({ recvBuffer: UDP_RECV_BUFFER, ...bind }, (msgs) => {
      for (const m of msgs) this.inFlight.answer(m);
    });
  }

  get size(): number {
    return this.inFlight.size;
  }

  drops(): number {
    return this.socket.drops();
  }

  query(wire: Buffer, t: UpstreamTarget): Promise<Buffer> {
    return this.inFlight.add(t, wire.readUInt16BE(0), (id) => this.socket.send(withId(wire, id), t.address, t.port));
  }

  close(): void {
    this.inFlight.close();
    this.socket.close();
  }
}

/** How long a transparent upstream socket with nothing in flight is kept for the client's next query. */
const TRANSPARENT_IDLE_MS = 10_000;
/** At most this many transparent upstream sockets; the least recently used goes first. */
const MAX_TRANSPARENT_SOCKETS = 4096;

/**
 * Transparent mode's UDP legs: one socket per client address and port, bound to them in the host
 * namespace with IP_TRANSPARENT and marked with the client's identity, so the query leaves from the
 * pod's own address and port. The resolver answers the pod's address; the datapath hands that answer
 * to this socket (bpf/lib/redirect.h, meshd_steer_to_upstream_socket), not to the pod.
 */
class TransparentUdp {
  private readonly sockets = new Map<string, { s: MarkedUdp; mark: number; usedAt: number }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly timeoutMs: number) {}

  query(wire: Buffer, t: UpstreamTarget, from: { address: string; port: number }): Promise<Buffer> {
    const key = `${from.address}/${from.port}`;
    let e = this.sockets.get(key);
    if (e) this.sockets.delete(key); // re-inserted last: the Map's order is least recently used first
    if (e && e.mark !== t.mark) {
      // The address now belongs to another identity (a new pod with a reused address): a new socket.
      e.s.close();
      e = undefined;
    }
    if (!e) {
      try {
        e = { s: new MarkedUdp({ address: from.address, port: from.port, transparent: true, reuseAddr: true, mark: t.mark }, this.timeoutMs), mark: t.mark, usedAt: 0 };
      } catch (err) {
        return Promise.reject(new DnsUpstreamError('MESHD_DNS_UPSTREAM_FAILED', `cannot send from ${from.address}:${from.port}`, err));
      }
      if (this.sockets.size >= MAX_TRANSPARENT_SOCKETS) this.closeOldest();
    }
    e.usedAt = performance.now();
    this.sockets.set(key, e);
    this.timer ??= setInterval(() => this.closeIdle(), 1000);
    this.timer.unref();
    return e.s.query(wire, t);
  }

  get size(): number {
    return this.sockets.size;
  }

  inFlight(): number {
    let n = 0;
    for (const e of this.sockets.values()) n += e.s.size;
    return n;
  }

  drops(): number {
    let n = 0;
    for (const e of this.sockets.values()) n += e.s.drops();
    return n;
  }

  private closeOldest(): void {
    const [key, e] = this.sockets.entries().next().value ?? [];
    if (key === undefined || !e) return;
    this.sockets.delete(key);
    e.s.close();
  }

  private closeIdle(): void {
    const now = performance.now();
    for (const [key, e] of this.sockets) {
      if (now - e.usedAt < TRANSPARENT_IDLE_MS) break;
      if (e.s.size > 0) continue;
      this.sockets.delete(key);
      e.s.close();
    }
    if (this.sockets.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const e of this.sockets.values()) e.s.close();
    this.sockets.clear();
  }
}

export class Upstreams {
  private readonly sockets = new Map<string, MarkedUdp>();
  private readonly transparent: TransparentUdp;
  private readonly timeoutMs: number;

  constructor(opts: { timeoutMs?: number } = {}) {
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.transparent = new TransparentUdp(this.timeoutMs);
  }

  /** Transparent mode: one query over UDP from the client's own address and port (see TransparentUdp). */
  udpFrom(wire: Buffer, t: UpstreamTarget, from: { address: string; port: number }): Promise<Buffer> {
    return this.transparent.query(wire, t, from);
  }

  /** Transparent sockets open now (tests, stats). */
  transparentSockets(): number {
    return this.transparent.size;
  }

  /** One query over UDP; resolves with the answer carrying the query's own id. */
  udp(wire: Buffer, t: UpstreamTarget): Promise<Buffer> {
    const v6 = isIPv6(t.address);
    const key = `${v6 ? 6 : 4}/${t.mark}`;
    let s = this.sockets.get(key);
    if (!s) {
      s = new MarkedUdp({ address: v6 ? '::' : '0.0.0.0', port: 0, mark: t.mark }, this.timeoutMs);
      this.sockets.set(key, s);
    }
    return s.query(wire, t);
  }

  /**
   * One query over a new marked TCP connection (2-byte length framing, RFC 7766); with `from`
   * (transparent mode) the connection leaves from the client's address and port, or from its address
   * and an ephemeral port when that port is taken (e.g. by the previous connection's TIME_WAIT).
   */
  async tcp(wire: Buffer, t: UpstreamTarget, from?: { address: string; port: number }): Promise<Buffer> {
    const deadline = AbortSignal.timeout(this.timeoutMs);
    const connect = (srcPort: number) => native.tcpConnect({ address: t.address, port: t.port, mark: t.mark, ...(from === undefined ? {} : { srcAddress: from.address, srcPort }) });
    let fd: number;
    try {
      fd = await connect(from?.port ?? 0).catch((e: unknown) => {
        const code = e instanceof Error && 'code' in e ? e.code : undefined;
        if (from && from.port !== 0 && (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL')) return connect(0);
        throw e;
      });
    } catch (e) {
      throw new DnsUpstreamError('MESHD_DNS_UPSTREAM_FAILED', `cannot connect to ${t.address}:${t.port}`, e);
    }
    const sock = new net.Socket({ fd, readable: true, writable: true });
    return new Promise<Buffer>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      const done = (err: unknown, answer?: Buffer) => {
        deadline.removeEventListener('abort', onAbort);
        sock.destroy();
        if (answer) resolve(answer);
        else reject(err);
      };
      const onAbort = () => done(new DnsUpstreamError('MESHD_DNS_UPSTREAM_TIMEOUT', `no answer from ${t.address}:${t.port} over TCP within ${this.timeoutMs} ms`));
      deadline.addEventListener('abort', onAbort);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length > MAX_MESSAGE + 2) return done(new DnsUpstreamError('MESHD_DNS_UPSTREAM_FAILED', 'oversized answer'));
        if (buf.length < 2) return;
        const len = buf.readUInt16BE(0);
        if (buf.length >= 2 + len) done(undefined, buf.subarray(2, 2 + len));
      });
      sock.on('error', (e) => done(new DnsUpstreamError('MESHD_DNS_UPSTREAM_FAILED', `TCP to ${t.address}:${t.port}`, e)));
      sock.on('close', () => done(new DnsUpstreamError('MESHD_DNS_UPSTREAM_FAILED', `${t.address}:${t.port} closed the connection without an answer`)));
      const frame = Buffer.alloc(2 + wire.length);
      frame.writeUInt16BE(wire.length, 0);
      wire.copy(frame, 2);
      sock.write(frame);
    });
  }

  inFlight(): number {
    let n = this.transparent.inFlight();
    for (const s of this.sockets.values()) n += s.size;
    return n;
  }

  /** Answers the kernel dropped on the upstream sockets open now (receive buffer full). */
  drops(): number {
    let n = this.transparent.drops();
    for (const s of this.sockets.values()) n += s.drops();
    return n;
  }

  close(): void {
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
    this.transparent.close();
  }
}
