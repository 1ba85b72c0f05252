/**
 * The node's transparent DNS proxy. The datapath hands it the DNS flows of
 * endpoints whose egress has DNS rules (bpf_sk_assign to the proxy port,
 * UDP and TCP); it learns each query's original destination (the pod's
 * resolver), asks the policy whether the endpoint may ask that name, answers
 * REFUSED (or NXDOMAIN) itself when not, and otherwise forwards the query to
 * that resolver with the client's identity in the upstream leg's mark. An
 * allowed answer is shown to `onAnswer` (the toFQDNs path: cache, identities,
 * ipcache, policy maps) and released to the client only when that finished,
 * or after `responseMaxDelayMs`, whichever comes first. Answers go back from
 * the original destination's address and port, byte for byte as the resolver
 * sent them (only the id restored).
 *
 *   const p = await DnsProxy.start({ port: 10001, judge: (f) => judgeDnsQuery(engine, f), onAnswer, rejectRcode: 'refused', responseMaxDelayMs: 100, log });
 *   p.stats();   // queries, allowed, rejected, malformed, upstream errors, …
 *   await p.stop();
 *
 * Nothing a client sends reaches the upstream unparsed (message.ts); a
 * malformed datagram is counted and answered FORMERR when it has a header,
 * a malformed TCP frame closes that connection. Queries sent to the proxy
 * port itself (not through the datapath) are dropped: forwarding them to
 * their "original destination" would loop.
 */
import net from 'node:net';
import { native } from '../../native/index.js';
import { type Datagram, openUdpSocket, type UdpSocketHandle } from '../../native/transparent.js';
import { proxyUpstreamMark } from '../datapath/abi.js';
import { isMeshdError, MeshdError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { DnsQueryFlow, DnsVerdict } from './dns-policy.js';
import { type AnswerAddresses, answerAddresses, type DnsQuery, MAX_MESSAGE, parseAnswer, parseQuery, Rcode, rejectReply } from './message.js';
import { UDP_RECV_BUFFER, Upstreams } from './upstream.js';

export type RejectResponseCode = 'refused' | 'nameError';

export interface DnsProxyOptions {
  port: number;
  /** IPv4 bind address of the UDP socket and TCP listener (default 0.0.0.0). */
  address?: string;
  /**
   * IPv6 bind address (default `::`; null: IPv4 only). The datapath's IPv6 redirect looks the proxy up
   * as [::1]:port, which a socket on `::` answers. A node without IPv6 keeps the IPv4 proxy (logged).
   */
  address6?: string | null;
  judge(flow: DnsQueryFlow): DnsVerdict;
  /**
   * Called with every allowed answer that has addresses. A promise makes the answer wait for it (at most
   * responseMaxDelayMs); undefined (nothing to enforce: a name whose addresses are already known) releases
   * it at once, with no timer and no extra turn of the event loop.
   */
  onAnswer?(v: DnsVerdict, q: DnsQuery, a: AnswerAddresses): Promise<void> | undefined;
  /** dnsProxy.dnsRejectResponseCode: REFUSED (default) or NXDOMAIN for a denied name. */
  rejectRcode: RejectResponseCode;
  /** dnsProxy.proxyResponseMaxDelay in ms. */
  responseMaxDelayMs: number;
  /**
   * dnsProxy.enableTransparentMode: whether the upstream leg to this resolver leaves from the client's own
   * address and port. Only where the datapath sees the resolver's answer and can hand it back to the
   * proxy: a resolver that is a local endpoint. Absent: never.
   */
  transparent?(serverIp: string): boolean;
  upstreamTimeoutMs?: number;
  log: Logger;
}

export interface DnsProxyStats {
  port: number;
  /** Whether the proxy listens for IPv6 DNS flows too. */
  ipv6: boolean;
  queries: number;
  allowed: number;
  rejected: number;
  malformed: number;
  upstreamErrors: number;
  /** Answers released before onAnswer finished (proxyResponseMaxDelay passed). */
  delayedPastMax: number;
  tcpConnections: number;
  /**
   * Datagrams the kernel dropped on the proxy's UDP sockets because their receive buffers were full
   * (queries on the listeners, answers on the upstream legs open now): the proxy fell behind.
   */
  receiveDrops: number;
}

/** One query as the proxy handled it (for logs and tests). */
export interface DnsRecord {
  at: string;
  protocol: 'udp' | 'tcp';
  client: string;
  server: string;
  name: string;
  qtype: string;
  endpointId: string | null;
  verdict: 'allowed' | 'rejected' | 'malformed' | 'upstream-error';
  rcode: number | null;
  ips: string[];
}

/** MESHD_DNS_PROXY_BIND: the proxy port cannot be bound (in use, no permission). */
export class DnsProxyError extends MeshdError {
  constructor(code: 'MESHD_DNS_PROXY_BIND', message: string, cause?: unknown) {
    super(code, message, { kind: 'unavailable', cause });
  }
}

/**
 * Where an allowed query's time goes inside the proxy, in ms between stages (the benchmark's "where
 * the time goes"): parse + judge, the upstream send, the wait for the resolver, the toFQDNs path
 * (cache, identities, maps) and the reply to the client. Off unless `traceStages()` asked for it.
 */
export const STAGES = ['judge', 'send', 'upstream', 'enforce', 'reply'] as const;
export type Stage = (typeof STAGES)[number];

class StageTrace {
  private readonly samples: Record<Stage, Float64Array>;
  private n = 0;

  constructor(readonly capacity: number) {
    this.samples = { judge: new Float64Array(capacity), send: new Float64Array(capacity), upstream: new Float64Array(capacity), enforce: new Float64Array(capacity), reply: new Float64Array(capacity) };
  }

  add(t0: number, judged: number, sent: number, answered: number, enforced: number, replied: number): void {
    const i = this.n++ % this.capacity;
    this.samples.judge[i] = judged - t0;
    this.samples.send[i] = sent - judged;
    this.samples.upstream[i] = answered - sent;
    this.samples.enforce[i] = enforced - answered;
    this.samples.reply[i] = replied - enforced;
  }

  report(): { count: number; stages: Record<Stage, { p50_ms: number; p99_ms: number; max_ms: number }> } {
    const count = Math.min(this.n, this.capacity);
    const one = (a: Float64Array) => {
      const xs = a.slice(0, count).sort();
      const at = (p: number) => Number((xs[Math.min(count - 1, Math.floor(p * count))] ?? Number.NaN).toFixed(4));
      return { p50_ms: at(0.5), p99_ms: at(0.99), max_ms: Number((xs[count - 1] ?? Number.NaN).toFixed(4)) };
    };
    return { count, stages: { judge: one(this.samples.judge), send: one(this.samples.send), upstream: one(this.samples.upstream), enforce: one(this.samples.enforce), reply: one(this.samples.reply) } };
  }
}

export type StageReport = ReturnType<StageTrace['report']>;

const MAX_TCP_CONNECTIONS = 512;
const MAX_RECORDS = 1000;
const MAX_REPLY_SOCKETS = 64;
const TCP_IDLE_MS = 10_000;

export class DnsProxy {
  private udp: UdpSocketHandle | null = null;
  private tcp: net.Server | null = null;
  private udp6: UdpSocketHandle | null = null;
  private tcp6: net.Server | null = null;
  private readonly upstreams: Upstreams;
  private readonly conns = new Set<net.Socket>();
  private readonly replySockets = new Map<string, UdpSocketHandle>();
  private readonly records: Array<{ at: number; r: Omit<DnsRecord, 'at'> }> = [];
  private recordNext = 0;
  private trace: StageTrace | null = null;
  private readonly counters: Omit<DnsProxyStats, 'port' | 'ipv6' | 'receiveDrops'> = { queries: 0, allowed: 0, rejected: 0, malformed: 0, upstreamErrors: 0, delayedPastMax: 0, tcpConnections: 0 };

  private constructor(private readonly o: DnsProxyOptions) {
    this.upstreams = new Upstreams(o.upstreamTimeoutMs === undefined ? {} : { timeoutMs: o.upstreamTimeoutMs });
  }

  static async start(o: DnsProxyOptions): Promise<DnsProxy> {
    const p = new DnsProxy(o);
    const address = o.address ?? '0.0.0.0';
    try {
      [p.udp, p.tcp] = await p.listen(address);
    } catch (e) {
      await p.stop();
      throw new DnsProxyError('MESHD_DNS_PROXY_BIND', `DNS proxy cannot listen on ${address}:${o.port}`, e);
    }
    const address6 = o.address6 === undefined ? '::' : o.address6;
    if (address6 !== null) {
      try {
        [p.udp6, p.tcp6] = await p.listen(address6);
      } catch (e) {
        // IPv6 off on this node (EAFNOSUPPORT, EADDRNOTAVAIL): IPv4 DNS flows are served all the same.
        p.udp6?.close();
        p.udp6 = null;
        o.log.warn('DNS proxy listens on IPv4 only', { address: address6, port: o.port, err: e });
      }
    }
    return p;
  }

  /** The UDP socket (original destinations reported) and the transparent TCP listener on one address. */
  private async listen(address: string): Promise<[UdpSocketHandle, net.Server]> {
    const udp = openUdpSocket({ address, port: this.o.port, recvOrigDst: true, reuseAddr: true, recvBuffer: UDP_RECV_BUFFER }, (msgs) => this.onDatagrams(msgs));
    try {
      const fd = native.tcpListen({ address, port: this.o.port, transparent: true });
      const server = net.createServer((c) => this.onConnection(c));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ fd }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return [udp, server];
    } catch (e) {
      udp.close();
      throw e;
    }
  }

  get port(): number {
    return this.o.port;
  }

  stats(): DnsProxyStats {
    const receiveDrops = (this.udp?.drops() ?? 0) + (this.udp6?.drops() ?? 0) + this.upstreams.drops();
    return { port: this.o.port, ipv6: this.udp6 !== null, ...this.counters, receiveDrops };
  }

  /** The last queries handled, oldest first. */
  recent(): DnsRecord[] {
    const ordered = [...this.records.slice(this.recordNext), ...this.records.slice(0, this.recordNext)];
    return ordered.map(({ at, r }) => ({ at: new Date(at).toISOString(), ...r }));
  }

  /** Starts timing the stages of the next `capacity` allowed queries (replacing what was timed). */
  traceStages(capacity = 100_000): void {
    this.trace = new StageTrace(capacity);
  }

  /** The stage timings since traceStages(), and stops timing. */
  stageReport(): StageReport | null {
    const r = this.trace?.report() ?? null;
    this.trace = null;
    return r;
  }

  /** Idempotent. Queries in flight are answered by no one (clients retry). */
  async stop(): Promise<void> {
    this.udp?.close();
    this.udp = null;
    this.udp6?.close();
    this.udp6 = null;
    for (const s of this.replySockets.values()) s.close();
    this.replySockets.clear();
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    const servers = [this.tcp, this.tcp6];
    this.tcp = null;
    this.tcp6 = null;
    await Promise.all(servers.map((srv) => (srv ? new Promise<void>((resolve) => srv.close(() => resolve())) : undefined)));
    this.upstreams.close();
  }

  /**
   * A transparent socket bound to a resolver's address and port, kept for the next answers from it
   * (a pod has one or two resolvers; creating one per answer cost five syscalls more). At most
   * MAX_REPLY_SOCKETS, least recently used closed first. It never receives anything: only the
   * datapath's sk_assign delivers packets for a foreign address, and it assigns them to the proxy port.
   */
  private replySocket(address: string, port: number): UdpSocketHandle {
    const key = `${address}/${port}`;
    let s = this.replySockets.get(key);
    if (s) {
      this.replySockets.delete(key);
    } else {
      s = openUdpSocket({ address, port, transparent: true, reuseAddr: true }, () => undefined);
      s.unref();
      if (this.replySockets.size >= MAX_REPLY_SOCKETS) {
        const [oldest, sock] = this.replySockets.entries().next().value ?? [];
        if (oldest !== undefined) this.replySockets.delete(oldest);
        sock?.close();
      }
    }
    this.replySockets.set(key, s);
    return s;
  }

  /** The last MAX_RECORDS queries, in a ring (no per-query date formatting or array shifting). */
  private record(r: Omit<DnsRecord, 'at'>): void {
    this.records[this.recordNext] = { at: Date.now(), r };
    this.recordNext = (this.recordNext + 1) % MAX_RECORDS;
  }

  // ---- UDP --------------------------------------------------------------------------------------

  private onDatagrams(msgs: Datagram[]): void {
    for (const m of msgs) {
      if (m.dstAddress === null || m.dstPort === null || m.dstPort === this.o.port || m.truncated) {
        this.counters.malformed++;
        continue;
      }
      const client = { address: m.srcAddress, port: m.srcPort };
      const server = { address: m.dstAddress, port: m.dstPort };
      const reply = (b: Buffer) => {
        try {
          this.replySocket(server.address, server.port).send(b, client.address, client.port);
        } catch (e) {
          this.o.log.debug('DNS answer not sent', { client: `${client.address}:${client.port}`, err: e });
        }
      };
      void this.handle('udp', m.data, client, server, reply);
    }
  }

  // ---- TCP --------------------------------------------------------------------------------------

  private onConnection(c: net.Socket): void {
    const server = { address: c.localAddress ?? '', port: c.localPort ?? 0 };
    const client = { address: c.remoteAddress ?? '', port: c.remotePort ?? 0 };
    if (server.port === this.o.port || this.conns.size >= MAX_TCP_CONNECTIONS) {
      c.destroy();
      return;
    }
    this.counters.tcpConnections++;
    this.conns.add(c);
    c.setTimeout(TCP_IDLE_MS, () => c.destroy());
    c.on('close', () => this.conns.delete(c));
    c.on('error', () => c.destroy());
    let buf: Buffer = Buffer.alloc(0);
    const reply = (b: Buffer) => {
      if (c.destroyed) return;
      const frame = Buffer.alloc(2 + b.length);
      frame.writeUInt16BE(b.length, 0);
      b.copy(frame, 2);
      c.write(frame);
    };
    c.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len < 12) {
          // Not a DNS message: the stream cannot be resynchronised.
          this.counters.malformed++;
          c.destroy();
          return;
        }
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        void this.handle('tcp', Buffer.from(msg), client, server, reply);
      }
      if (buf.length > MAX_MESSAGE + 2) c.destroy();
    });
  }

  // ---- one query --------------------------------------------------------------------------------

  private async handle(protocol: 'udp' | 'tcp', data: Buffer, client: { address: string; port: number }, server: { address: string; port: number }, reply: (b: Buffer) => void): Promise<void> {
    const t0 = this.trace ? performance.now() : 0;
    const base = { protocol, client: `${client.address}:${client.port}`, server: `${server.address}:${server.port}` };
    const parsed = parseQuery(data);
    if (!parsed.ok) {
      this.counters.malformed++;
      this.record({ ...base, name: '', qtype: '', endpointId: null, verdict: 'malformed', rcode: parsed.reply ? (parsed.reply.readUInt16BE(2) & 0xf) : null, ips: [] });
      if (parsed.reply) reply(parsed.reply);
      return;
    }
    const q = parsed.query;
    this.counters.queries++;
    let v: DnsVerdict;
    try {
      v = this.o.judge({ clientIp: client.address, serverIp: server.address, serverPort: server.port, protocol: protocol === 'udp' ? 17 : 6, name: q.name });
    } catch (e) {
      this.o.log.error('DNS policy lookup failed; query refused', { name: q.name, err: e });
      v = { allowed: false, reason: 'denied', endpointId: null, identity: 0, serverIdentity: 0, policies: [] };
    }
    const rec = { ...base, name: q.name, qtype: q.qtype, endpointId: v.endpointId };
    if (!v.allowed) {
      this.counters.rejected++;
      const rcode = this.o.rejectRcode === 'nameError' ? Rcode.NXDOMAIN : Rcode.REFUSED;
      this.record({ ...rec, verdict: 'rejected', rcode, ips: [] });
      reply(rejectReply(q, rcode));
      return;
    }
    this.counters.allowed++;
    const judged = this.trace ? performance.now() : 0;
    let sent = 0;
    let answer: Buffer;
    try {
      const target = { address: server.address, port: server.port, mark: v.identity > 0 ? proxyUpstreamMark(v.identity) : 0 };
      const pending = this.o.transparent?.(server.address)
        ? protocol === 'udp'
          ? this.upstreams.udpFrom(q.wire, target, client)
          : this.upstreams.tcp(q.wire, target, client)
        : protocol === 'udp'
          ? this.upstreams.udp(q.wire, target)
          : this.upstreams.tcp(q.wire, target);
      if (this.trace) sent = performance.now();
      answer = await pending;
    } catch (e) {
      this.counters.upstreamErrors++;
      this.record({ ...rec, verdict: 'upstream-error', rcode: Rcode.SERVFAIL, ips: [] });
      this.o.log.debug('DNS upstream failed', { name: q.name, server: base.server, code: isMeshdError(e) ? e.code : undefined, err: e });
      reply(rejectReply(q, Rcode.SERVFAIL));
      return;
    }
    const a = parseAnswer(answer, q);
    if (!a.ok) {
      this.counters.upstreamErrors++;
      this.record({ ...rec, verdict: 'upstream-error', rcode: Rcode.SERVFAIL, ips: [] });
      reply(rejectReply(q, Rcode.SERVFAIL));
      return;
    }
    const answered = this.trace ? performance.now() : 0;
    const addrs = answerAddresses(a.packet, q.name);
    if (addrs.ips.length > 0 && this.o.onAnswer) {
      const enforcing = this.startOnAnswer(v, q, addrs);
      if (enforcing) await this.waitForPolicy(enforcing, q);
    }
    const enforced = this.trace ? performance.now() : 0;
    this.record({ ...rec, verdict: 'allowed', rcode: a.rcode, ips: addrs.ips });
    reply(answer);
    if (this.trace && t0 > 0) this.trace.add(t0, judged, sent, answered, enforced, performance.now());
  }

  /** onAnswer's promise, or undefined when there is nothing to wait for (a throw is logged; the answer goes). */
  private startOnAnswer(v: DnsVerdict, q: DnsQuery, a: AnswerAddresses): Promise<void> | undefined {
    try {
      return this.o.onAnswer?.(v, q, a);
    } catch (e) {
      this.o.log.error('toFQDNs update for a DNS answer failed; the answer is released anyway', { name: q.name, err: e });
      return undefined;
    }
  }

  /** Waits for onAnswer's promise, bounded by responseMaxDelayMs (Cilium's proxyResponseMaxDelay). */
  private async waitForPolicy(enforcing: Promise<void>, q: DnsQuery): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.o.responseMaxDelayMs);
    });
    try {
      const r = await Promise.race([enforcing.then(() => 'done' as const), late]);
      if (r === 'late') this.counters.delayedPastMax++;
    } catch (e) {
      this.o.log.error('toFQDNs update for a DNS answer failed; the answer is released anyway', { name: q.name, err: e });
    } finally {
      clearTimeout(timer);
    }
  }
}
