/**
 * `meshd ui`: a service map and a live flow table in the browser, fed by an
 * observer API (a node's or the relay's). The server follows GetFlows, keeps
 * the last flows in memory and serves one self-contained page (no build
 * step: plain HTML, CSS and script) plus two JSON routes the page polls:
 *
 *   GET /api/flows?after=SEQ   flows newer than SEQ: { seq, flows: [UiFlow] }
 *   GET /api/map               { nodes: [{ id }], edges: [{ from, to, port, protocol, verdicts, l7 }] }
 *
 * Nodes are workloads (namespace/app label, else the pod, else the reserved
 * identity or the address); an edge is a (source, destination, port) seen in
 * flows, red when it was denied, with its HTTP methods, paths and statuses.
 *
 *   const ui = new FlowUi({ server: 'unix:///var/run/meshd/hubble.sock', port: 12000 });
 *   await ui.start();  …  await ui.close();   // idempotent
 */
import * as grpc from '@grpc/grpc-js';
import { createServer, type Server } from 'node:http';
import { MeshdError } from '../util/errors.js';
import type { Endpoint, Flow } from './flow.js';
import { compactTime, eventName, summary } from './flow-format.js';
import { parseFlowsResponse } from './flow-schema.js';
import { HUBBLE_CHANNEL_OPTIONS, loadHubbleProtos } from './protos.js';

export interface UiFlow {
  seq: number;
  time: string;
  src: string;
  dst: string;
  port: number;
  protocol: string;
  verdict: string;
  type: string;
  summary: string;
}

interface Edge {
  from: string;
  to: string;
  port: number;
  protocol: string;
  verdicts: Record<string, number>;
  /** Last verdict seen on the edge. */
  last: string;
  l7: string[];
}

/** The workload a side of a flow belongs to, as the map names its nodes. */
export function workloadOf(e: Endpoint, ip: string | undefined): string {
  const app = e.labels.find((l) => l.startsWith('k8s:app='))?.slice('k8s:app='.length);
  if (e.namespace && app) return `${e.namespace}/${app}`;
  if (e.namespace && e.pod_name) return `${e.namespace}/${e.pod_name}`;
  const reserved = e.labels.find((l) => l.startsWith('reserved:'));
  return reserved ?? ip ?? 'unknown';
}

const target = (s: string) => (s.startsWith('unix://') ? `unix:${s.slice('unix://'.length)}` : s);

export class FlowUi {
  private readonly flows: UiFlow[] = [];
  private readonly edges = new Map<string, Edge>();
  private seq = 0;
  private http: Server | null = null;
  private client: InstanceType<grpc.ServiceClientConstructor> | null = null;
  private stream: grpc.ClientReadableStream<unknown> | null = null;
  private closed = false;
  port = 0;

  constructor(private readonly opts: { server: string; port: number; host?: string; keep?: number }) {}

  async start(): Promise<void> {
    this.follow();
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://ui');
      const json = (v: unknown) => res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(v));
      if (url.pathname === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      else if (url.pathname === '/api/flows') {
        const after = Number(url.searchParams.get('after') ?? '0');
        json({ seq: this.seq, flows: this.flows.filter((f) => f.seq > (Number.isFinite(after) ? after : 0)) });
      } else if (url.pathname === '/api/map') {
        const nodes = new Set<string>();
        for (const e of this.edges.values()) nodes.add(e.from).add(e.to);
        json({ nodes: [...nodes].sort().map((id) => ({ id })), edges: [...this.edges.values()] });
      } else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new MeshdError('MESHD_OBSERVE_LISTEN', `ui: cannot listen on port ${this.opts.port}: ${e.message}`, { kind: 'conflict', cause: e })));
      server.listen(this.opts.port, this.opts.host ?? '0.0.0.0', () => resolve());
    });
    const a = server.address();
    this.port = typeof a === 'object' && a ? a.port : this.opts.port;
    this.http = server;
  }

  /** Follows the observer (the last 2,000 flows first); reconnects after a second when the stream ends or fails. */
  private follow(): void {
    if (this.closed) return;
    const { Observer } = loadHubbleProtos();
    this.client ??= new Observer(target(this.opts.server), grpc.credentials.createInsecure(), HUBBLE_CHANNEL_OPTIONS);
    const m = this.client.getFlows;
    if (typeof m !== 'function') throw new MeshdError('MESHD_OBSERVE_PROTOS_MISSING', 'observer.Observer has no GetFlows', { kind: 'failed' });
    const s: grpc.ClientReadableStream<unknown> = m.call(this.client, { follow: true, number: this.seq === 0 ? '2000' : '0' });
    this.stream = s;
    s.on('data', (msg: unknown) => {
      try {
        const r = parseFlowsResponse(msg);
        if (r.kind === 'flow') this.add(r.flow);
      } catch {
        // A malformed response is skipped; the stream goes on.
      }
    });
    const again = () => {
      if (this.stream === s && !this.closed) setTimeout(() => this.follow(), 1000).unref();
    };
    s.on('error', again);
    s.on('end', again);
  }

  add(f: Flow): void {
    const src = workloadOf(f.source, f.IP?.source);
    const dst = workloadOf(f.destination, f.IP?.destination);
    const ports = f.l4?.protocol === 'TCP' ? f.l4.TCP : f.l4?.protocol === 'UDP' ? f.l4.UDP : f.l4?.protocol === 'SCTP' ? f.l4.SCTP : undefined;
    // Replies (http-response) belong to the request's edge.
    const reply = f.is_reply?.value === true;
    const from = reply ? dst : src;
    const to = reply ? src : dst;
    const port = ports ? (reply ? ports.source_port : ports.destination_port) : 0;
    this.seq += 1;
    this.flows.push({ seq: this.seq, time: compactTime(f.time), src, dst, port, protocol: f.l7 ? f.l7.record : (f.l4?.protocol ?? ''), verdict: f.verdict, type: eventName(f), summary: summary(f) });
    if (this.flows.length > (this.opts.keep ?? 2000)) this.flows.splice(0, this.flows.length - (this.opts.keep ?? 2000));
    const key = `${from}|${to}|${port}`;
    let e = this.edges.get(key);
    if (!e) {
      e = { from, to, port, protocol: f.l4?.protocol ?? '', verdicts: {}, last: f.verdict, l7: [] };
      this.edges.set(key, e);
    }
    e.verdicts[f.verdict] = (e.verdicts[f.verdict] ?? 0) + 1;
    e.last = f.verdict;
    if (f.l7?.record === 'http') {
      const h = f.l7.http;
      const what = f.l7.type === 'RESPONSE' ? `${h.method} ${new URL(h.url, 'http://x').pathname} → ${h.code}` : '';
      if (what && !e.l7.includes(what)) e.l7.push(what);
      if (e.l7.length > 20) e.l7.shift();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stream?.cancel();
    this.client?.close();
    const h = this.http;
    this.http = null;
    if (h) {
      h.closeAllConnections();
      await new Promise<void>((r) => h.close(() => r()));
    }
  }
}

/** The page: a service map (SVG, workloads on a circle, edges coloured by verdict) and a live flow table, polling every 500 ms. */
const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>meshd flows</title>
<style>
body{font:13px system-ui,sans-serif;margin:0;color:#222}
header{padding:8px 12px;background:#1f2937;color:#fff}
main{display:flex;gap:12px;padding:12px}
#map{border:1px solid #ddd;background:#fafafa}
.node circle{fill:#fff;stroke:#2563eb;stroke-width:2}
.node text{font-size:12px}
.edge{stroke-width:2;fill:none}
.edge.FORWARDED{stroke:#16a34a}.edge.DROPPED{stroke:#dc2626}.edge.ERROR{stroke:#d97706}.edge.REDIRECTED{stroke:#2563eb}
.elabel{font-size:10px;fill:#555}
table{border-collapse:collapse;font-size:12px}
td,th{padding:2px 6px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
tr.DROPPED td{color:#dc2626}
#filters{margin-bottom:6px}
</style></head>
<body><header>meshd flows — service map and live flows</header>
<main>
<svg id="map" width="640" height="520" viewBox="0 0 640 520"></svg>
<section>
<div id="filters"><input id="q" placeholder="filter: workload, port, text"> <select id="verdict"><option value="">any verdict</option><option>FORWARDED</option><option>DROPPED</option><option>REDIRECTED</option><option>ERROR</option></select></div>
<table><thead><tr><th>time</th><th>source</th><th>destination</th><th>type</th><th>verdict</th><th>summary</th></tr></thead><tbody id="flows"></tbody></table>
</section>
</main>
<script>
"use strict";
let seq = 0; const rows = [];
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
function renderTable() {
  const q = document.getElementById("q").value.toLowerCase();
  const v = document.getElementById("verdict").value;
  const shown = rows.filter((f) => (!v || f.verdict === v) && (!q || JSON.stringify(f).toLowerCase().includes(q))).slice(-200).reverse();
  document.getElementById("flows").innerHTML = shown.map((f) => '<tr class="' + esc(f.verdict) + '" data-seq="' + f.seq + '"><td>' + esc(f.time) + "</td><td>" + esc(f.src) + "</td><td>" + esc(f.dst) + ":" + f.port + "</td><td>" + esc(f.type) + "</td><td>" + esc(f.verdict) + "</td><td>" + esc(f.summary) + "</td></tr>").join("");
}
function renderMap(m) {
  const svg = document.getElementById("map");
  const n = m.nodes.length, pos = {};
  m.nodes.forEach((node, i) => { const a = (2 * Math.PI * i) / Math.max(n, 1) - Math.PI / 2; pos[node.id] = { x: 320 + 200 * Math.cos(a), y: 260 + 200 * Math.sin(a) }; });
  let out = '<defs><marker id="arrow" viewBox="0 0 10 10" refX="24" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>';
  const pairs = {};
  for (const e of m.edges) {
    const p = pos[e.from], q = pos[e.to]; if (!p || !q) continue;
    const k = e.from + "|" + e.to; const bend = (pairs[k] = (pairs[k] || 0) + 1) * 18;
    const mx = (p.x + q.x) / 2 + bend, my = (p.y + q.y) / 2 - bend;
    const cls = e.verdicts.DROPPED ? "DROPPED" : e.last;
    out += '<path class="edge ' + esc(cls) + '" data-from="' + esc(e.from) + '" data-to="' + esc(e.to) + '" data-port="' + e.port + '" d="M' + p.x + "," + p.y + " Q" + mx + "," + my + " " + q.x + "," + q.y + '" marker-end="url(#arrow)"><title>' + esc(e.from + " → " + e.to + ":" + e.port + " " + JSON.stringify(e.verdicts) + (e.l7.length ? "\\n" + e.l7.join("\\n") : "")) + "</title></path>";
    out += '<text class="elabel" x="' + mx + '" y="' + my + '">' + esc(e.protocol + "/" + e.port + (e.l7.length ? " · " + e.l7.slice(-2).join(", ") : "")) + "</text>";
  }
  for (const node of m.nodes) { const p = pos[node.id]; out += '<g class="node" data-id="' + esc(node.id) + '"><circle cx="' + p.x + '" cy="' + p.y + '" r="16"/><text x="' + (p.x + 20) + '" y="' + (p.y + 4) + '">' + esc(node.id) + "</text></g>"; }
  svg.innerHTML = out;
}
async function tick() {
  try {
    const r = await (await fetch("/api/flows?after=" + seq)).json();
    if (r.flows.length) { rows.push(...r.flows); if (rows.length > 2000) rows.splice(0, rows.length - 2000); seq = r.seq; renderTable(); }
    renderMap(await (await fetch("/api/map")).json());
  } catch (e) { /* the next tick retries */ }
  setTimeout(tick, 500);
}
document.getElementById("q").oninput = renderTable; document.getElementById("verdict").onchange = renderTable;
tick();
</script></body></html>
`;
