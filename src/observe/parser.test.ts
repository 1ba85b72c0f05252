import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FlowRecord } from '../datapath/endpoint/flow-events.js';
import { FLOW_METRIC_HANDLERS, FlowMetrics, parseMetricsEnabled } from './metrics.js';
import { isMeshdError } from '../util/errors.js';
import { addNanos, timestampFromMs, timestampFromNs } from './flow.js';
import { FlowParser, type EndpointResolver } from './parser.js';

const resolver: EndpointResolver = {
  peer: (ip, identity) =>
    ip === '10.1.0.2'
      ? { identity: identity ?? 300, labels: ['k8s:app=client'], namespace: 'default', podName: 'client' }
      : ip === '10.1.0.3'
        ? { identity: identity ?? 301, labels: ['k8s:app=api'], namespace: 'default', podName: 'api', endpointId: 7 }
        : { identity: identity ?? 2, labels: ['reserved:world'] },
  service: (ip, port) => (ip === '10.96.0.10' && port === 80 ? { name: 'api', namespace: 'default' } : undefined),
  decision: (_ip, direction, _remote, _proto, _port, verdict) =>
    verdict === 'allow' && direction === 'ingress' ? { allowedBy: [{ name: 'api-l7', namespace: 'default', kind: '' }], deniedBy: [] } : { allowedBy: [], deniedBy: [] },
};
const clock = { wallNs: (m: bigint) => 1_700_000_000_000_000_000n + m, nowNs: () => 1_700_000_000_000_000_000n };
const parser = new FlowParser({ nodeName: 'n1', resolver, clock });

const rec = (over: Partial<FlowRecord>): FlowRecord => ({
  monotonicNs: 5n,
  type: 'verdict',
  direction: 'ingress',
  verdict: 'ALLOW',
  endpointNumericId: 7,
  ifindex: 12,
  srcIdentity: 300,
  dstIdentity: 301,
  family: 4,
  protocol: 6,
  src: { ip: '10.1.0.2', port: 40000 },
  dst: { ip: '10.1.0.3', port: 8080 },
  ...over,
});

test('a kernel drop becomes a Hubble DROPPED flow with both sides, the drop reason and the direction', () => {
  const f = parser.fromDatapath(rec({ type: 'drop', dropReason: 'POLICY_DEFAULT_DENY', verdict: 'DENY' }));
  assert.equal(f.verdict, 'DROPPED');
  assert.equal(f.drop_reason_desc, 'POLICY_DENIED');
  assert.equal(f.drop_reason, 133);
  assert.deepEqual(f.event_type, { type: 1, sub_type: 2 });
  assert.equal(f.traffic_direction, 'INGRESS');
  assert.equal(f.Type, 'L3_L4');
  assert.deepEqual(f.source, { identity: 300, labels: ['k8s:app=client'], namespace: 'default', pod_name: 'client' });
  assert.equal(f.destination.ID, 7);
  assert.deepEqual(f.l4, { protocol: 'TCP', TCP: { source_port: 40000, destination_port: 8080 } });
  assert.deepEqual(f.time, { seconds: '1700000000', nanos: 5 });
  assert.equal(f.is_reply, undefined);
});

test('a new-connection verdict is FORWARDED with the allowing policy; a redirect is REDIRECTED with the proxy port; a VIP names its Service', () => {
  const v = parser.fromDatapath(rec({}));
  assert.equal(v.verdict, 'FORWARDED');
  assert.deepEqual(v.is_reply, { value: false });
  assert.deepEqual(v.ingress_allowed_by, [{ name: 'api-l7', namespace: 'default', kind: '' }]);
  const r = parser.fromDatapath(rec({ type: 'redirect', verdict: 'REDIRECT', proxyPort: 15001 }));
  assert.equal(r.verdict, 'REDIRECTED');
  assert.equal(r.proxy_port, 15001);
  const s = parser.fromDatapath(rec({ direction: 'egress', dst: { ip: '10.96.0.10', port: 80 }, dstIdentity: 2 }));
  assert.deepEqual(s.destination_service, { name: 'api', namespace: 'default' });
  assert.equal(s.source.ID, 7, 'on egress the event belongs to the source');
});

test('an access-log entry becomes an http-request and an http-response flow; an RBAC denial is DROPPED', () => {
  const [req, resp] = parser.fromHttp({
    time: '2026-12-02T01:00:00.000Z',
    logName: 'default_api_ingress_id300',
    source: '10.1.0.2:40000',
    destination: '10.1.0.3:8080',
    method: 'GET',
    authority: 'api:8080',
    path: '/admin',
    status: 403,
    details: 'rbac_access_denied_matched_policy[none]',
    verdict: 'DENIED',
    latencyNs: 2_000_000,
    protocol: 'HTTP/1.1',
  });
  assert.equal(req.verdict, 'DROPPED');
  assert.equal(req.l7?.type, 'REQUEST');
  assert.equal(req.source.pod_name, 'client');
  assert.equal(req.traffic_direction, 'INGRESS');
  assert.equal(resp.l7?.type, 'RESPONSE');
  assert.equal(resp.l7?.record === 'http' ? resp.l7.http.code : 0, 403);
  assert.equal(resp.l7?.latency_ns, '2000000');
  assert.equal(resp.source.pod_name, 'api');
  assert.deepEqual(resp.is_reply, { value: true });
  assert.equal(BigInt(resp.time.seconds) * 1_000_000_000n + BigInt(resp.time.nanos) - (BigInt(req.time.seconds) * 1_000_000_000n + BigInt(req.time.nanos)), 2_000_000n);

  const m = new FlowMetrics(['httpV2', 'drop', 'flow']);
  m.process([req, resp]);
  return m.registry.getSingleMetricAsString('hubble_http_requests_total').then((text) => {
    assert.match(text, /hubble_http_requests_total\{method="GET",protocol="HTTP\/1\.1",status="403",reporter="server"\} 1/);
  });
});

test('hubble.metrics.enabled: known handlers with options; an unknown name is refused', () => {
  assert.deepEqual(parseMetricsEnabled(['dns:query;ignoreAAAA', 'drop', 'drop']), ['dns', 'drop']);
  assert.ok(FLOW_METRIC_HANDLERS.includes('httpV2'));
  assert.throws(() => parseMetricsEnabled(['flows']), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_METRICS_CONFIG'));
});

test('TCP flags from the datapath event reach the flow (and its summary); ICMP carries its type', () => {
  const syn = parser.fromDatapath(rec({ tcpFlags: 0x02 }));
  assert.deepEqual(syn.l4, { protocol: 'TCP', TCP: { source_port: 40000, destination_port: 8080, flags: { SYN: true } } });
  const rst = parser.fromDatapath(rec({ type: 'drop', dropReason: 'INVALID_PACKET', verdict: 'DENY', tcpFlags: 0x14 }));
  assert.deepEqual(rst.l4?.protocol === 'TCP' ? rst.l4.TCP.flags : undefined, { RST: true, ACK: true });
  const fin = parser.fromDatapath(rec({ tcpFlags: 0x11 }));
  assert.equal(fin.Summary, 'TCP Flags: FIN, ACK');
  const ping = parser.fromDatapath(rec({ protocol: 1, icmpType: 8, src: { ip: '10.1.0.2', port: 0 }, dst: { ip: '10.1.0.3', port: 0 } }));
  assert.deepEqual(ping.l4, { protocol: 'ICMPv4', ICMPv4: { type: 8, code: 0 } });
});

test('timestamps from milliseconds and latencies in plain numbers equal the BigInt arithmetic', () => {
  for (const ms of [0, 1, 999, 1000, 1_796_000_000_123, 1_796_000_000_999]) {
    assert.deepEqual(timestampFromMs(ms), timestampFromNs(BigInt(ms) * 1_000_000n));
    for (const lat of [0, 1, 999_999_999, 1_000_000_000, 4_321_000_000_123]) {
      assert.deepEqual(addNanos(timestampFromMs(ms), lat), timestampFromNs(BigInt(ms) * 1_000_000n + BigInt(lat)));
    }
  }
});

test('an audit event (policyAuditMode) is an AUDIT flow, not a drop: no drop reason fields', () => {
  const a = parser.fromDatapath(rec({ type: 'audit', dropReason: 'POLICY_DEFAULT_DENY', verdict: 'DENY' }));
  assert.equal(a.verdict, 'AUDIT');
  assert.equal(a.drop_reason_desc, undefined);
});
