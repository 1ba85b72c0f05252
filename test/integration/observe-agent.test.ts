/**
 * Flow observability against a live agent with the node's Envoy: the demo's
 * pods and HTTP policy, real requests (allowed, denied by Envoy's RBAC,
 * dropped in the kernel), then the flows through the observer API as
 * `meshd observe` prints them, a follower that sees a new flow as it happens,
 * the real `hubble` CLI against the same socket, and both metrics endpoints
 * scraped over HTTP and parsed as Prometheus text.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { z } from 'zod';
import { hubbleSocketPath } from '../../src/observe/hubble.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { startHttpClient } from '../helpers/l7-peers.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { parsePromText, value } from './observe-prom-text.js';

const run = promisify(execFile);

const SERVER = `require('http').createServer((q, s) => s.end('api ' + q.method + ' ' + q.url)).listen(8080, '0.0.0.0', () => console.log('ready'));
require('http').createServer((q, s) => s.end('metrics')).listen(9090, '0.0.0.0');`;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const a = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  if (typeof a !== 'object' || a === null) throw new Error('no port');
  return a.port;
}

/** The fields the assertions read, from `-o json` (protobuf's JSON mapping, proto field names). */
const JsonFlow = z.object({
  verdict: z.string(),
  drop_reason_desc: z.string().optional(),
  Type: z.string(),
  traffic_direction: z.string().optional(),
  node_name: z.string(),
  is_reply: z.boolean().optional(),
  source: z.object({ identity: z.number().optional(), namespace: z.string().optional(), pod_name: z.string().optional(), labels: z.array(z.string()).optional() }),
  destination: z.object({ identity: z.number().optional(), namespace: z.string().optional(), pod_name: z.string().optional(), labels: z.array(z.string()).optional() }),
  l4: z.object({ TCP: z.object({ destination_port: z.number().optional(), source_port: z.number().optional(), flags: z.record(z.string(), z.boolean()).optional() }).optional() }).optional(),
  l7: z.object({ type: z.string(), http: z.object({ code: z.number().optional(), method: z.string(), url: z.string() }) }).optional(),
  ingress_allowed_by: z.array(z.object({ name: z.string(), namespace: z.string().optional() })).optional(),
  time: z.string(),
});
/** `-o json` lines are GetFlowsResponses (json is jsonpb's alias, in meshd as in the pinned hubble CLI): their flows. */
const jsonFlows = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      const r = z.object({ flow: z.unknown().optional(), node_name: z.string().optional() }).parse(JSON.parse(l));
      return r.flow === undefined ? [] : [JsonFlow.parse(r.flow)];
    });

test('flows of a live agent: meshd observe, a follower, the hubble CLI, Prometheus metrics', async (t) => {
  requirePrivileges();
  const [flowMetricsPort, agentMetricsPort] = [await freePort(), await freePort()];
  const node = new AgentNode({
    'envoy.enabled': true,
    'bpf.events.sampleNewConnections': 1,
    'hubble.eventBufferCapacity': 1023,
    'hubble.metrics.enabled': ['flow', 'drop', 'tcp', 'port-distribution', 'httpV2'],
    'hubble.metrics.port': flowMetricsPort,
    'prometheus.enabled': true,
    'prometheus.port': agentMetricsPort,
  });
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true });
  copyFileSync(repoPath('examples', 'demo', 'pods.yaml'), join(node.manifests, 'pods.yaml'));
  copyFileSync(repoPath('examples', 'demo', 'api-policy.yaml'), join(node.manifests, 'api-policy.yaml'));
  const running = await node.start();
  const client = await node.addPod('client');
  const api = await node.addPod('api');
  const intruder = await node.addPod('intruder');
  const server = spawn('ip', ['netns', 'exec', api.ns, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    server.kill('SIGKILL');
  });
  await new Promise<void>((resolve) => server.stdout.once('data', () => resolve()));

  // The pods' policies (with the redirect to Envoy) are in the kernel once nothing waits for Envoy's ACK.
  for (let i = 0; i < 300 && running.agent.endpointList().some((e) => e.pending !== null || e.policyRevision === 0); i += 1) await new Promise((r) => setTimeout(r, 100));
  const events = { flows: () => running.agent.recentFlows() };
  const fromClient = await startHttpClient(node.sb, client.ns, events);
  const fromIntruder = await startHttpClient(node.sb, intruder.ns, events);
  const base = `http://${api.ip}:8080`;
  assert.equal((await fromClient.request({ url: `${base}/api/v1/users` })).kind, 'answered');
  assert.equal((await fromClient.request({ url: `${base}/admin` })).kind, 'denied');
  assert.deepEqual(await fromIntruder.request({ url: `${base}/api/v1/users`, timeoutMs: 1500 }), { kind: 'dropped', reason: 'POLICY_DEFAULT_DENY', direction: 'ingress' });

  const socket = hubbleSocketPath(node.config);
  const meshd = (...args: string[]) => run(process.execPath, [repoPath('bin', 'meshd.mjs'), 'observe', '--server', `unix://${socket}`, ...args], { timeout: 20_000 });

  // The kernel's drop, enriched: pods, namespace, labels, identities, Hubble's drop reason.
  const drops = jsonFlows((await meshd('--verdict', 'DROPPED', '--to-pod', 'default/api', '-o', 'json')).stdout);
  const drop = drops.find((f) => f.source.pod_name === 'intruder');
  assert.ok(drop, JSON.stringify(drops));
  assert.equal(drop.Type, 'L3_L4');
  assert.equal(drop.drop_reason_desc, 'POLICY_DENIED');
  assert.equal(drop.traffic_direction, 'INGRESS');
  assert.equal(drop.node_name, 'test-node');
  assert.equal(drop.destination.namespace, 'default');
  assert.equal(drop.l4?.TCP?.destination_port, 8080);
  // The packet the kernel dropped was the connection's SYN (its flags come from the datapath event).
  assert.deepEqual(drop.l4?.TCP?.flags, { SYN: true });
  assert.ok(drop.source.labels?.includes('k8s:app=intruder'), JSON.stringify(drop.source));
  assert.ok(drop.destination.labels?.includes('k8s:app=api'), JSON.stringify(drop.destination));

  // Envoy's access log: the denied request as http-request and http-response flows, 403, decided by the policy.
  const denied = jsonFlows((await meshd('--http-status', '403', '-o', 'json')).stdout);
  assert.equal(denied.length, 1, JSON.stringify(denied));
  const resp = denied[0];
  assert.equal(resp?.Type, 'L7');
  assert.equal(resp?.verdict, 'DROPPED');
  assert.equal(resp?.l7?.type, 'RESPONSE');
  assert.equal(resp?.l7?.http.method, 'GET');
  assert.match(resp?.l7?.http.url ?? '', /\/admin$/);
  assert.equal(resp?.is_reply, true);
  assert.equal(resp?.source.pod_name, 'api');
  assert.equal(resp?.destination.pod_name, 'client');
  const allowed = jsonFlows((await meshd('--http-path', '^/api/v1/users$', '--http-method', 'GET', '--type', 'l7', '-o', 'json')).stdout);
  const request = allowed.find((f) => f.l7?.type === 'REQUEST');
  assert.ok(request, JSON.stringify(allowed));
  assert.equal(request.verdict, 'FORWARDED');
  assert.equal(request.traffic_direction, 'INGRESS');
  assert.deepEqual(request.ingress_allowed_by?.map((p) => `${p.namespace ?? ''}/${p.name}`), ['default/api-l7']);

  // Namespace and label filters, compact and table output.
  const compact = (await meshd('--namespace', 'default', '--label', 'k8s:app=intruder', '--last', '50')).stdout;
  assert.match(compact, /default\/intruder:\d+ \(ID:\d+\) -> default\/api:8080 \(ID:\d+\) drop DROPPED \(POLICY_DENIED\)/);
  assert.doesNotMatch(compact, /default\/client/);
  const table = (await meshd('--from-pod', 'default/client', '--protocol', 'http', '-o', 'table')).stdout;
  assert.match(table.split('\n')[0] ?? '', /^TIMESTAMP\s+SOURCE\s+DESTINATION\s+TYPE\s+VERDICT\s+SUMMARY$/);
  assert.match(table, /http-request\s+FORWARDED\s+HTTP\/1\.1 GET http:\/\/[^ ]+\/api\/v1\/users/);
  const jsonpb = (await meshd('--last', '1', '-o', 'jsonpb')).stdout.trim();
  const pb = z.object({ flow: z.object({ uuid: z.string() }), node_name: z.literal('test-node'), time: z.string() }).parse(JSON.parse(jsonpb));
  assert.ok(pb.flow.uuid.length > 0);

  // A bad filter is refused by the server with its field, not ignored.
  await assert.rejects(meshd('--http-status', 'abc'), (e: unknown) => {
    assert.ok(e instanceof Error && 'stderr' in e);
    assert.match(String(e.stderr), /http_status_code/);
    return true;
  });

  // A follower sees a new denial within 2 s of it happening. `--last 1` prints the earlier drop at once: then it is connected.
  const follower = spawn(process.execPath, [repoPath('bin', 'meshd.mjs'), 'observe', '--server', `unix://${socket}`, '-f', '--last', '1', '--verdict', 'DROPPED', '--from-pod', 'default/intruder', '-o', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    follower.kill('SIGKILL');
  });
  let followed = '';
  follower.stdout.on('data', (b: Buffer) => (followed += b.toString()));
  for (let i = 0; i < 600 && !/"destination_port":8080/.test(followed); i += 1) await new Promise((r) => setTimeout(r, 25));
  assert.match(followed, /"destination_port":8080/, 'the follower printed the last drop first');
  const before = Date.now();
  void fromIntruder.request({ url: `http://${api.ip}:9090/metrics`, timeoutMs: 1500 });
  while (!/"destination_port":9090/.test(followed) && Date.now() - before < 2000) await new Promise((r) => setTimeout(r, 25));
  assert.match(followed, /"destination_port":9090/, 'the follower saw the drop within 2 s');
  follower.kill('SIGINT');

  // The real hubble CLI (built from the same cilium module) against the same socket.
  // (setup builds it; a cold build takes many minutes, too long for a test to wait on.)
  const hubble = (await run('bash', [repoPath('scripts', 'hubble-cli.sh'), '--print-bin'])).stdout.trim();
  assert.ok(existsSync(hubble), `${hubble} is missing: run scripts/hubble-cli.sh (setup does)`);
  const hubbleDrops = jsonFlows((await run(hubble, ['observe', '--server', `unix://${socket}`, '--verdict', 'DROPPED', '-o', 'json'], { timeout: 20_000 })).stdout);
  assert.ok(hubbleDrops.some((f) => f.source.pod_name === 'intruder' && f.destination.pod_name === 'api' && f.drop_reason_desc === 'POLICY_DENIED'), JSON.stringify(hubbleDrops));
  const hubbleHttp = (await run(hubble, ['observe', '--server', `unix://${socket}`, '--http-status', '403', '--type', 'l7'], { timeout: 20_000 })).stdout;
  assert.match(hubbleHttp, /default\/client:\d+ \(ID:\d+\) <- default\/api:8080 \(ID:\d+\) http-response DROPPED \(HTTP\/1\.1 403 \d+ms \(GET http:\/\/[^ ]+\/admin\)\)/);
  const status = (await run(hubble, ['status', '--server', `unix://${socket}`], { timeout: 20_000 })).stdout;
  assert.match(status, /Current\/Max Flows:\s+[\d,]+\/1,023/);

  // Metrics: Hubble's flow metrics and the agent's, over HTTP, parsed as Prometheus text.
  const scrape = async (port: number) => {
    const r = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parsePromText(await r.text());
  };
  const fm = await scrape(flowMetricsPort);
  assert.equal(fm.types.get('hubble_flows_processed_total'), 'counter');
  assert.equal(fm.types.get('hubble_drop_total'), 'counter');
  assert.equal(fm.types.get('hubble_http_request_duration_seconds'), 'histogram');
  assert.ok(value(fm, 'hubble_drop_total', { reason: 'POLICY_DENIED', protocol: 'TCP' }) >= 2);
  assert.equal(value(fm, 'hubble_http_requests_total', { method: 'GET', protocol: 'HTTP/1.1', status: '403', reporter: 'server' }), 1);
  assert.ok(value(fm, 'hubble_http_requests_total', { status: '200', reporter: 'server' }) >= 1);
  assert.ok(value(fm, 'hubble_http_request_duration_seconds_count', { method: 'GET', reporter: 'server' }) >= 2);
  assert.ok(value(fm, 'hubble_flows_processed_total', { type: 'L7', subtype: 'HTTP' }) >= 4);
  assert.ok(value(fm, 'hubble_flows_processed_total', { type: 'Drop', verdict: 'DROPPED' }) >= 2);
  assert.ok(value(fm, 'hubble_port_distribution_total', { protocol: 'TCP', port: '8080' }) >= 1);
  assert.equal(fm.types.get('hubble_tcp_flags_total'), 'counter');
  assert.ok(value(fm, 'hubble_tcp_flags_total', { flag: 'SYN', family: 'IPv4' }) >= 2);
  const am = await scrape(agentMetricsPort);
  assert.equal(value(am, 'meshd_agent_up'), 1);
  assert.equal(value(am, 'meshd_policy', { state: 'enforced' }), 1);
  assert.equal(value(am, 'meshd_endpoint'), 3);
  assert.equal(value(am, 'meshd_proxy_up'), 1);
  assert.ok(value(am, 'meshd_drop_count_total', { reason: 'POLICY_DEFAULT_DENY', direction: 'INGRESS' }) >= 2);
  assert.equal(value(am, 'hubble_flows_in_store', { kind: 'max' }), 1023);
  assert.equal(am.types.get('hubble_lost_events_total'), 'counter');
});
