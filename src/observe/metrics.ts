/**
 * Prometheus metrics with prom-client, each registry on its own HTTP port:
 * - Hubble's flow metrics (hubble.metrics.port, 9965) with Hubble's names and
 *   labels, one handler per entry of `hubble.metrics.enabled` ("flow", "drop",
 *   "tcp", "port-distribution", "httpV2", "http", "dns", "icmp"; options
 *   after ":" are accepted as Cilium writes them);
 * - the agent's own metrics (prometheus.port, 9962): health, policies,
 *   endpoints, identities, proxy (xDS version and NACK), datapath drops and
 *   new connections by the kernel's counters, the flow store and its losses.
 *
 *   const m = new FlowMetrics(['flow', 'drop', 'httpV2']);  observer.onFlows((fs) => m.process(fs));
 *   const srv = await serveMetrics(m.registry, 9965);  …  await srv.close();
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { MeshdError } from '../util/errors.js';
import type { Flow } from './flow.js';
import { CounterCells, HistogramCells } from './metric-cells.js';
import type { FlowObserver } from './observer.js';

export class MetricsConfigError extends MeshdError {
  constructor(message: string) {
    super('MESHD_OBSERVE_METRICS_CONFIG', message, { kind: 'invalid' });
  }
}

export const FLOW_METRIC_HANDLERS = ['flow', 'drop', 'tcp', 'port-distribution', 'httpV2', 'http', 'dns', 'icmp'] as const;
type Handler = (typeof FLOW_METRIC_HANDLERS)[number];

const isHandler = (s: string): s is Handler => (FLOW_METRIC_HANDLERS as readonly string[]).includes(s);

/** "httpV2:exemplars=true;labelsContext=…" → "httpV2"; an unknown name is refused. */
export function parseMetricsEnabled(entries: readonly string[]): Handler[] {
  const out: Handler[] = [];
  for (const e of entries) {
    const name = e.split(':')[0]?.trim() ?? '';
    if (!isHandler(name)) throw new MetricsConfigError(`hubble.metrics.enabled: unknown metric "${name}" (known: ${FLOW_METRIC_HANDLERS.join(', ')})`);
    if (!out.includes(name)) out.push(name);
  }
  return out;
}

const FLOW_TYPE: Record<number, string> = { 1: 'Drop', 4: 'Trace', 5: 'PolicyVerdict', 129: 'L7' };
const TCP_FLAGS = ['SYN', 'FIN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR', 'NS'] as const;

/** Hubble's protocol label (v1.FlowProtocol): the L7 protocol when there is one, else the L4 one. */
function protocolLabel(f: Flow): string {
  if (f.l7) return f.l7.record === 'http' ? 'HTTP' : f.l7.record === 'dns' ? 'DNS' : 'Kafka';
  return f.l4?.protocol ?? 'Unknown flow';
}

export class FlowMetrics {
  readonly registry = new Registry();
  private readonly fns: Array<(f: Flow) => void> = [];

  constructor(enabled: readonly string[]) {
    const r = this.registry;
    for (const h of parseMetricsEnabled(enabled)) {
      switch (h) {
        case 'flow': {
          const cells = new CounterCells<'protocol' | 'type' | 'subtype' | 'verdict'>();
          const c: Counter<'protocol' | 'type' | 'subtype' | 'verdict'> = new Counter({ name: 'hubble_flows_processed_total', help: 'Total number of flows processed', labelNames: ['protocol', 'type', 'subtype', 'verdict'], registers: [r], collect: () => cells.flushInto(c) });
          this.fns.push((f) => {
            // Every label is a function of these three (and the L7 record): they make the key.
            const l7 = f.l7?.record ?? '';
            cells.add(`${f.event_type.type}|${l7 || (f.l4?.protocol ?? '')}|${f.verdict}`, () => {
              const type = FLOW_TYPE[f.event_type.type] ?? 'Unknown';
              const subtype = type === 'L7' && f.l7 ? (f.l7.record === 'http' ? 'HTTP' : f.l7.record === 'dns' ? 'DNS' : '') : type === 'Unknown' ? String(f.event_type.type) : '';
              return { protocol: protocolLabel(f), type, subtype, verdict: f.verdict };
            });
          });
          break;
        }
        case 'drop': {
          const cells = new CounterCells<'reason' | 'protocol'>();
          const c: Counter<'reason' | 'protocol'> = new Counter({ name: 'hubble_drop_total', help: 'Number of drops', labelNames: ['reason', 'protocol'], registers: [r], collect: () => cells.flushInto(c) });
          this.fns.push((f) => {
            if (f.verdict !== 'DROPPED') return;
            const reason = f.drop_reason_desc ?? 'DROP_REASON_UNKNOWN';
            const protocol = protocolLabel(f);
            cells.add(`${reason}|${protocol}`, () => ({ reason, protocol }));
          });
          break;
        }
        case 'tcp': {
          const cells = new CounterCells<'flag' | 'family'>();
          const c: Counter<'flag' | 'family'> = new Counter({ name: 'hubble_tcp_flags_total', help: 'TCP flag occurrences', labelNames: ['flag', 'family'], registers: [r], collect: () => cells.flushInto(c) });
          this.fns.push((f) => {
            if (f.l4?.protocol !== 'TCP' || !f.l4.TCP.flags || f.l7) return;
            const flags = f.l4.TCP.flags;
            const family = f.IP?.ipVersion ?? '';
            for (const flag of TCP_FLAGS) if (flags[flag]) cells.add(`${flag}|${family}`, () => ({ flag, family }));
          });
          break;
        }
        case 'port-distribution': {
          const cells = new CounterCells<'protocol' | 'port'>();
          const c: Counter<'protocol' | 'port'> = new Counter({ name: 'hubble_port_distribution_total', help: 'Numbers of packets distributed by destination port', labelNames: ['protocol', 'port'], registers: [r], collect: () => cells.flushInto(c) });
          this.fns.push((f) => {
            if (f.verdict === 'DROPPED' || f.l7 || !f.l4) return;
            const l4 = f.l4;
            const port = l4.protocol === 'TCP' ? l4.TCP.destination_port : l4.protocol === 'UDP' ? l4.UDP.destination_port : l4.protocol === 'SCTP' ? l4.SCTP.destination_port : 0;
            cells.add(`${l4.protocol}|${port}`, () => ({ protocol: l4.protocol, port: String(port) }));
          });
          break;
        }
        case 'httpV2':
        case 'http': {
          const v2 = h === 'httpV2';
          type Req = 'method' | 'protocol' | 'status' | 'reporter';
          const reqCells = new CounterCells<Req>();
          const respCells = new CounterCells<Req>();
          const durCells = new HistogramCells<'method' | 'reporter'>();
          const requests: Counter<Req> = new Counter({ name: 'hubble_http_requests_total', help: 'Count of HTTP requests', labelNames: v2 ? ['method', 'protocol', 'status', 'reporter'] : ['method', 'protocol', 'reporter'], registers: [r], collect: () => reqCells.flushInto(requests) });
          const responses: Counter<Req> | null = v2 ? null : new Counter({ name: 'hubble_http_responses_total', help: 'Count of HTTP responses', labelNames: ['method', 'protocol', 'status', 'reporter'], registers: [r], collect: () => {
              if (responses) respCells.flushInto(responses);
            } });
          const duration: Histogram<'method' | 'reporter'> = new Histogram({ name: 'hubble_http_request_duration_seconds', help: 'Quantiles of HTTP request duration in seconds', labelNames: ['method', 'reporter'], registers: [r], collect: () => durCells.flushInto(duration) });
          durCells.bind(duration);
          this.fns.push((f) => {
            if (f.l7?.record !== 'http') return;
            const http = f.l7.http;
            const reporter = f.traffic_direction === 'EGRESS' ? 'client' : f.traffic_direction === 'INGRESS' ? 'server' : 'unknown';
            if (f.l7.type === 'REQUEST') {
              if (!v2) reqCells.add(`${http.method}|${http.protocol}|${reporter}`, () => ({ method: http.method, protocol: http.protocol, reporter }));
              return;
            }
            if (f.l7.type !== 'RESPONSE') return;
            const key = `${http.method}|${http.protocol}|${http.code}|${reporter}`;
            const labels = () => ({ method: http.method, protocol: http.protocol, status: String(http.code), reporter });
            (v2 ? reqCells : respCells).add(key, labels);
            if (f.l7.latency_ns !== undefined) durCells.observe(`${http.method}|${reporter}`, () => ({ method: http.method, reporter }), Number(f.l7.latency_ns) / 1e9);
          });
          break;
        }
        case 'dns': {
          type Dns = 'rcode' | 'qtypes' | 'ips_returned';
          const qCells = new CounterCells<Dns>();
          const rCells = new CounterCells<Dns>();
          const queries: Counter<Dns> = new Counter({ name: 'hubble_dns_queries_total', help: 'Number of DNS queries observed', labelNames: ['rcode', 'qtypes', 'ips_returned'], registers: [r], collect: () => qCells.flushInto(queries) });
          const responses: Counter<Dns> = new Counter({ name: 'hubble_dns_responses_total', help: 'Number of DNS responses observed', labelNames: ['rcode', 'qtypes', 'ips_returned'], registers: [r], collect: () => rCells.flushInto(responses) });
          this.fns.push((f) => {
            if (f.l7?.record !== 'dns') return;
            const d = f.l7.dns;
            const labels = { rcode: f.l7.type === 'RESPONSE' ? rcodeName(d.rcode ?? 0) : '', qtypes: (d.qtypes ?? []).join(','), ips_returned: String(d.ips?.length ?? 0) };
            (f.l7.type === 'REQUEST' ? qCells : rCells).add(`${labels.rcode}|${labels.qtypes}|${labels.ips_returned}`, () => labels);
          });
          break;
        }
        case 'icmp': {
          const cells = new CounterCells<'family' | 'type'>();
          const c: Counter<'family' | 'type'> = new Counter({ name: 'hubble_icmp_total', help: 'Number of ICMP messages', labelNames: ['family', 'type'], registers: [r], collect: () => cells.flushInto(c) });
          this.fns.push((f) => {
            if (f.l4?.protocol === 'ICMPv4') {
              const type = String(f.l4.ICMPv4.type);
              cells.add(`4|${type}`, () => ({ family: 'IPv4', type }));
            } else if (f.l4?.protocol === 'ICMPv6') {
              const type = String(f.l4.ICMPv6.type);
              cells.add(`6|${type}`, () => ({ family: 'IPv6', type }));
            }
          });
          break;
        }
      }
    }
  }

  get handlers(): number {
    return this.fns.length;
  }

  process(flows: readonly Flow[]): void {
    if (this.fns.length === 0) return;
    for (const f of flows) for (const fn of this.fns) fn(f);
  }
}

/** DNS RCODEs as Hubble's dns handler names them. */
function rcodeName(n: number): string {
  return ['No Error', 'Format Error', 'Server Failure', 'Non-Existent Domain', 'Not Implemented', 'Query Refused'][n] ?? String(n);
}

/** What the agent metrics read at scrape time. */
export interface AgentMetricsSource {
  status(): { running: boolean; counts: { endpoints: number; policies: number; rejectedPolicies: number; identities: number; problems: number } };
  /** null when the agent runs without a proxy. */
  proxy(): { up: boolean; ackedVersion: string; nacked: boolean } | null;
  datapath(): {
    drops: Array<{ direction: string; reason: string; packets: bigint }>;
    newConnections: Record<'ingress' | 'egress', { allowed: bigint; redirected: bigint }>;
    /** Flow events the kernel's ring buffer had no room for (a counter since the maps were created). */
    eventsLost?: bigint;
  } | null;
  observer: FlowObserver | null;
}

/** The agent's metrics, read at scrape time (nothing on the datapath's path). */
export function agentMetrics(src: AgentMetricsSource): Registry {
  const r = new Registry();
  new Gauge({
    name: 'meshd_agent_up',
    help: 'Whether the agent runs (1) or is starting or stopping (0)',
    registers: [r],
    collect() {
      this.set(src.status().running ? 1 : 0);
    },
  });
  new Gauge({
    name: 'meshd_policy',
    help: 'Number of policies, by state',
    labelNames: ['state'],
    registers: [r],
    collect() {
      const c = src.status().counts;
      this.set({ state: 'enforced' }, c.policies);
      this.set({ state: 'rejected' }, c.rejectedPolicies);
    },
  });
  new Gauge({
    name: 'meshd_endpoint',
    help: 'Number of endpoints on this node',
    registers: [r],
    collect() {
      this.set(src.status().counts.endpoints);
    },
  });
  new Gauge({
    name: 'meshd_identity',
    help: 'Number of identities the agent knows',
    registers: [r],
    collect() {
      this.set(src.status().counts.identities);
    },
  });
  new Gauge({
    name: 'meshd_resource_problems',
    help: 'Problems recorded with resources and policies',
    registers: [r],
    collect() {
      this.set(src.status().counts.problems);
    },
  });
  new Gauge({
    name: 'meshd_proxy_up',
    help: 'Whether the node proxy (Envoy) runs',
    registers: [r],
    collect() {
      const p = src.proxy();
      if (p) this.set(p.up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'meshd_xds_acked_version',
    help: 'The configuration version the proxy last accepted (value 1, version as label)',
    labelNames: ['version'],
    registers: [r],
    collect() {
      this.reset();
      const p = src.proxy();
      if (p?.ackedVersion) this.set({ version: p.ackedVersion }, 1);
    },
  });
  new Gauge({
    name: 'meshd_xds_nacked',
    help: 'Whether the last configuration sent to the proxy was rejected and nothing newer was accepted',
    registers: [r],
    collect() {
      this.set(src.proxy()?.nacked ? 1 : 0);
    },
  });
  new Counter({
    name: 'meshd_drop_count_total',
    help: 'Packets dropped by the datapath, by reason and direction (the kernel counters)',
    labelNames: ['reason', 'direction'],
    registers: [r],
    collect() {
      // The kernel's counters are the truth: copied as they are at each scrape.
      this.reset();
      for (const d of src.datapath()?.drops ?? []) this.inc({ reason: d.reason, direction: d.direction.toUpperCase() }, Number(d.packets));
    },
  });
  new Counter({
    name: 'meshd_new_connections_total',
    help: 'New connections the datapath allowed or redirected to the proxy, by direction',
    labelNames: ['direction', 'verdict'],
    registers: [r],
    collect() {
      const nc = src.datapath()?.newConnections;
      if (!nc) return;
      this.reset();
      for (const dir of ['ingress', 'egress'] as const) {
        this.inc({ direction: dir.toUpperCase(), verdict: 'allowed' }, Number(nc[dir].allowed));
        this.inc({ direction: dir.toUpperCase(), verdict: 'redirected' }, Number(nc[dir].redirected));
      }
    },
  });
  new Gauge({
    name: 'hubble_flows_in_store',
    help: 'Flows held in the node flow store, and its capacity',
    labelNames: ['kind'],
    registers: [r],
    collect() {
      const o = src.observer;
      if (!o) return;
      const s = o.status();
      this.set({ kind: 'current' }, Number(s.num_flows));
      this.set({ kind: 'max' }, Number(s.max_flows));
    },
  });
  new Counter({
    name: 'hubble_lost_events_total',
    help: 'Events lost on their way to the flow store or to a follower, by source',
    labelNames: ['source'],
    registers: [r],
    collect() {
      const o = src.observer;
      if (!o) return;
      this.reset();
      for (const [source, n] of Object.entries(o.lost)) this.inc({ source }, n);
    },
  });
  new Counter({
    name: 'hubble_seen_flows_total',
    help: 'Flows the node flow store received since start',
    registers: [r],
    collect() {
      const o = src.observer;
      if (!o) return;
      this.reset();
      this.inc(Number(o.status().seen_flows));
    },
  });
  return r;
}

/** Serves one registry's text format on GET /metrics. close() is idempotent. */
export async function serveMetrics(registry: Registry, port: number, host = '0.0.0.0'): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry
      .metrics()
      .then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text))
      .catch((e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e instanceof Error ? e.message : String(e)}\n`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new MeshdError('MESHD_OBSERVE_METRICS_LISTEN', `metrics: cannot listen on ${host}:${port}: ${e.message}`, { kind: 'conflict', cause: e })));
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  let closed = false;
  return {
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () => {
      if (closed) return Promise.resolve();
      closed = true;
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
