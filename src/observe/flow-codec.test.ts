import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import * as protoLoader from '@grpc/proto-loader';
import { flowsResponseDecoder, flowsResponseEncoder } from './flow-codec.js';
import { timestampFromNs, type Flow } from './flow.js';
import { HUBBLE_LOADER_OPTIONS, loadHubbleProtos } from './protos.js';

const base: Flow = {
  time: timestampFromNs(1_796_000_000_123_456_789n),
  uuid: '6a4f2c1e-0000-4000-8000-000000000001',
  emitter: { name: 'meshd', version: '' },
  verdict: 'FORWARDED',
  IP: { source: '10.0.0.1', destination: 'fd00::1:2', ipVersion: 'IPv6' },
  l4: { protocol: 'TCP', TCP: { source_port: 40000, destination_port: 8080, flags: { SYN: true, ACK: false } } },
  source: { ID: 0, identity: 0, labels: [], namespace: '' },
  destination: { ID: 7, identity: 70000, labels: ['k8s:app=api', 'k8s:io.kubernetes.pod.namespace=default'], namespace: 'default', pod_name: 'api-7d9f-x2', workloads: [{ name: 'api', kind: 'Deployment' }] },
  Type: 'L3_L4',
  node_name: 'node-1',
  event_type: { type: 5, sub_type: 0 },
  traffic_direction: 'INGRESS',
  is_reply: { value: false },
  interface: { index: 9, name: '' },
  ingress_allowed_by: [{ name: 'api', namespace: 'default', kind: '', revision: '18446744073709551615', labels: ['k8s:io.cilium.k8s.policy.name=api'] }],
  Summary: 'TCP Flags: SYN',
};

const flows: Flow[] = [
  base,
  { ...base, verdict: 'DROPPED', drop_reason: 133, drop_reason_desc: 'POLICY_DENIED', event_type: { type: 1, sub_type: 3 }, l4: { protocol: 'ICMPv4', ICMPv4: { type: 8, code: 0 } } },
  {
    ...base,
    Type: 'L7',
    l7: { type: 'RESPONSE', latency_ns: '1234567', record: 'http', http: { code: 403, method: 'DELETE', url: 'http://api:8080/api/v1/users?q=ä€', protocol: 'HTTP/1.1', headers: [{ key: 'x', value: 'y'.repeat(300) }] } },
  },
  { ...base, Type: 'L7', l7: { type: 'REQUEST', record: 'dns', dns: { query: 'api.default.svc.cluster.local.', ips: ['10.96.0.10'], ttl: 30, rcode: 0, qtypes: ['A'], rrtypes: ['A'], cnames: [] } } },
  { ...base, Type: 'L7', l7: { type: 'RESPONSE', record: 'kafka', kafka: { error_code: -1, api_version: 12, api_key: 'produce', correlation_id: 2_000_000_000, topic: 'orders' } } },
];

test('the compiled encoder writes the same bytes as proto-loader\'s serializer (fields in number order), for every kind of flow and a lost event', () => {
  const { Observer, dir } = loadHubbleProtos();
  const m = Observer.service.GetFlows;
  assert.ok(m);
  const encode = flowsResponseEncoder(dir);
  const responses: object[] = [
    ...flows.map((flow) => ({ response_types: 'flow', flow, node_name: 'node-1', time: flow.time })),
    { response_types: 'lost_events', lost_events: { source: 'HUBBLE_RING_BUFFER', num_events_lost: '42', first: base.time, last: base.time }, node_name: 'node-1', time: base.time },
  ];
  for (const r of responses) {
    const fast = encode(r);
    assert.deepEqual(m.responseDeserialize(fast), m.responseDeserialize(m.responseSerialize(r)));
    assert.ok(fast.equals(m.responseSerialize(r)), `${JSON.stringify(r).slice(0, 80)}…: bytes differ from proto-loader's`);
  }
});

test('a value the encoder cannot write is MESHD_OBSERVE_ENCODE (the server then uses proto-loader\'s serializer)', () => {
  const encode = flowsResponseEncoder(loadHubbleProtos().dir);
  assert.throws(() => encode({ response_types: 'flow', flow: { ...base, verdict: 'NOT_A_VERDICT' } }), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_ENCODE'));
  assert.throws(() => encode({ response_types: 'flow', flow: { ...base, node_name: 7 } }), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_ENCODE'));
  assert.throws(() => encode({ response_types: 'flow', flow: { ...base, source: 'not a message' } }), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_ENCODE') && /Flow\.source: not a message/.test(String(e)));
  assert.throws(() => encode({ response_types: 'flow', flow: { ...base, policy_log: 'not a list' } }), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_ENCODE') && /Flow\.policy_log: not a list/.test(String(e)));
});

/** proto-loader's own GetFlows response deserializer (loadHubbleProtos' clients use the compiled one). */
function protoLoaderDeserialize(dir: string): (b: Buffer) => unknown {
  const def = protoLoader.loadSync(['observer/observer.proto'], { ...HUBBLE_LOADER_OPTIONS, includeDirs: [dir] });
  const service = def['observer.Observer'];
  const m = service && 'GetFlows' in service ? service.GetFlows : undefined;
  assert.ok(m && typeof m === 'object' && 'responseDeserialize' in m);
  return m.responseDeserialize;
}

test('the compiled decoder gives the object proto-loader\'s deserializer gives, keys in the same order, for every kind of flow and a lost event', () => {
  const { dir, Observer } = loadHubbleProtos();
  const slow = protoLoaderDeserialize(dir);
  const decode = flowsResponseDecoder(dir);
  const encode = flowsResponseEncoder(dir);
  const responses: object[] = [
    ...flows.map((flow) => ({ response_types: 'flow', flow, node_name: 'node-1', time: flow.time })),
    { response_types: 'lost_events', lost_events: { source: 'HUBBLE_RING_BUFFER', num_events_lost: '18446744073709551615', first: base.time, last: base.time }, node_name: 'node-1', time: { seconds: '-5', nanos: 0 } },
  ];
  for (const r of responses) {
    const bytes = encode(r);
    assert.equal(JSON.stringify(decode(bytes)), JSON.stringify(slow(bytes)));
    assert.deepEqual(decode(bytes), slow(bytes));
    // An unknown field (number 999, varint) is skipped by both.
    const withUnknown = Buffer.concat([bytes, Buffer.from([0xb8, 0x3e, 0x07])]);
    assert.deepEqual(decode(withUnknown), slow(withUnknown));
  }
  // The clients made by loadHubbleProtos decode with it, and a message it cannot read goes through proto-loader's.
  const m = Observer.service.GetFlows;
  assert.ok(m);
  const bytes = encode(responses[0] ?? {});
  assert.deepEqual(m.responseDeserialize(bytes), slow(bytes));
});

test('bytes the compiled decoder cannot read are MESHD_OBSERVE_DECODE', () => {
  const { dir } = loadHubbleProtos();
  const decode = flowsResponseDecoder(dir);
  const bytes = flowsResponseEncoder(dir)({ response_types: 'flow', flow: base, node_name: 'node-1', time: base.time });
  assert.throws(() => decode(bytes.subarray(0, bytes.length - 3)), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_DECODE'));
  // Field 1 (flow, a message) with wire type 0.
  assert.throws(() => decode(Buffer.from([0x08, 0x01])), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_DECODE') && /GetFlowsResponse\.flow: wire type 0/.test(String(e)));
});
