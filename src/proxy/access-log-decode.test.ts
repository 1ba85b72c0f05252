import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as protoLoader from '@grpc/proto-loader';
import { accessLogDecoder, envoyProtoDirs, keptTypes, loadAlsProtos } from './access-log-decode.js';
import { AccessLogServer, type L7FlowRecord } from './access-log-server.js';

/** Envoy's own message types, as a generic decoder sees them (every field). */
function fullCodec() {
  const def = protoLoader.loadSync('envoy/service/accesslog/v3/als.proto', { includeDirs: envoyProtoDirs(), keepCase: true, longs: Number, enums: String, defaults: false, oneofs: false });
  const m = def['envoy.service.accesslog.v3.AccessLogService'];
  const method = m && 'StreamAccessLogs' in m ? m.StreamAccessLogs : undefined;
  assert.ok(method && 'requestSerialize' in method);
  return method;
}

const sa = (address: string, port_value: number) => ({ socket_address: { address, port_value } });
const dur = (nanos: number) => ({ seconds: 0, nanos });

/** An entry with the fields Envoy fills for a proxied request, most of which no flow shows. */
function entry(i: number, over: { method?: string; status?: number; details?: string } = {}) {
  return {
    common_properties: {
      downstream_remote_address: sa('10.200.1.2', 40000 + i),
      downstream_local_address: sa('10.200.1.3', 8080),
      downstream_direct_remote_address: sa('10.200.1.2', 40000 + i),
      upstream_remote_address: sa('10.200.1.3', 8080),
      upstream_local_address: sa('10.200.1.2', 51234),
      upstream_cluster: 'meshd_odst_70001',
      route_name: 'r',
      start_time: { seconds: 1_796_000_000 + i, nanos: 123_000_000 },
      time_to_last_rx_byte: dur(1_000),
      time_to_first_upstream_rx_byte: dur(300_000),
      time_to_last_downstream_tx_byte: { seconds: 2, nanos: 330_000 },
      stream_id: `s-${i}`,
      downstream_wire_bytes_sent: 200,
      upstream_request_attempt_count: 1,
      access_log_type: 'DownstreamEnd',
    },
    protocol_version: 'HTTP2',
    request: { request_method: over.method ?? 'GET', scheme: 'http', authority: 'api:8080', path: `/api/v1/users/${i}`, user_agent: 'wrk', request_id: 'f3b1c2de-1234-4abc-9def-0123456789ab', request_headers_bytes: 80 },
    response: { response_code: { value: over.status ?? 200 }, response_headers_bytes: 90, response_body_bytes: 22, response_code_details: over.details ?? 'via_upstream' },
  };
}

const message = (entries: unknown[]) => ({ identifier: { node: { id: 'node-1', cluster: 'meshd' }, log_name: 'default_api_ingress_8080' }, http_logs: { log_entry: entries } });

test('the access-log decoder reads the kept fields as a decoder of the whole message does, and only those', () => {
  const full = fullCodec();
  const bytes = full.requestSerialize(message([entry(1), entry(2, { method: 'DELETE', status: 403, details: 'rbac_access_denied_matched_policy[none]' })]));
  const got = accessLogDecoder()(bytes);
  const want = full.requestDeserialize(bytes);
  const pick = (e: ReturnType<typeof entry>) => ({
    common_properties: {
      downstream_remote_address: e.common_properties.downstream_remote_address,
      downstream_local_address: e.common_properties.downstream_local_address,
      start_time: e.common_properties.start_time,
      time_to_last_downstream_tx_byte: e.common_properties.time_to_last_downstream_tx_byte,
    },
    protocol_version: e.protocol_version,
    request: { request_method: e.request.request_method, authority: e.request.authority, path: e.request.path },
    response: { response_code: e.response.response_code, response_code_details: e.response.response_code_details },
  });
  assert.deepEqual(JSON.parse(JSON.stringify(got)), { identifier: { log_name: 'default_api_ingress_8080' }, http_logs: { log_entry: [pick(entry(1)), pick(entry(2, { method: 'DELETE', status: 403, details: 'rbac_access_denied_matched_policy[none]' }))] } });
  // The same values as the whole message's decoder gives for those fields.
  const wantEntries = (want as { http_logs: { log_entry: Array<ReturnType<typeof entry>> } }).http_logs.log_entry;
  assert.deepEqual(JSON.parse(JSON.stringify(got)).http_logs.log_entry, JSON.parse(JSON.stringify(wantEntries.map(pick))));
});

test('the kept types carry Envoy\'s field numbers', () => {
  const full = loadAlsProtos();
  const kept = keptTypes(full);
  for (const [local, name] of [
    ['HttpEntry', 'envoy.data.accesslog.v3.HTTPAccessLogEntry'],
    ['Common', 'envoy.data.accesslog.v3.AccessLogCommon'],
    ['Request', 'envoy.data.accesslog.v3.HTTPRequestProperties'],
  ] as const) {
    const k = kept.lookupType(local);
    const f = full.lookupType(name);
    for (const field of k.fieldsArray) assert.equal(field.id, f.fields[field.name]?.id, `${name}.${field.name}`);
  }
  assert.equal(kept.lookupType('Common').fieldsArray.length, 4);
});

test('bytes that are not a StreamAccessLogsMessage are refused', () => {
  assert.throws(() => accessLogDecoder()(Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0x0f])));
});

test('the access-log server hands a message\'s records to a subscriber in one call and counts what it cannot read', () => {
  const als = new AccessLogServer({ socketPath: '/nonexistent/als.sock' });
  const batches: Array<readonly L7FlowRecord[]> = [];
  als.subscribe((rs) => batches.push(rs));
  const full = fullCodec();
  const decode = accessLogDecoder();
  const first = als.handle(decode(full.requestSerialize(message([entry(1), entry(2, { method: 'POST', status: 403, details: 'rbac_access_denied_matched_policy[none]' })]))), '');
  assert.equal(first, 'default_api_ingress_8080');
  // Envoy names the log in a stream's first message only.
  als.handle(decode(full.requestSerialize({ http_logs: { log_entry: [entry(3, { status: 503, details: 'upstream_reset_before_response_started' })] } })), first);
  assert.equal(batches.length, 2);
  assert.deepEqual(batches[0]?.map((r) => [r.method, r.path, r.status, r.verdict]), [
    ['GET', '/api/v1/users/1', 200, 'FORWARDED'],
    ['POST', '/api/v1/users/2', 403, 'DENIED'],
  ]);
  const r = batches[0]?.[0];
  assert.deepEqual(r && { ...r }, {
    time: new Date((1_796_000_001 * 1000) + 123).toISOString(),
    logName: 'default_api_ingress_8080',
    source: '10.200.1.2:40001',
    destination: '10.200.1.3:8080',
    method: 'GET',
    authority: 'api:8080',
    path: '/api/v1/users/1',
    status: 200,
    details: 'via_upstream',
    verdict: 'FORWARDED',
    latencyNs: 2_000_330_000,
    protocol: 'HTTP/2',
  });
  assert.equal(batches[1]?.[0]?.logName, 'default_api_ingress_8080');
  assert.equal(batches[1]?.[0]?.verdict, 'ERROR');
  als.handle({ http_logs: { log_entry: [{ request: { path: 7 } }] } }, first);
  assert.deepEqual(als.counters, { forwarded: 1, denied: 1, error: 1, malformed: 1 });
  assert.equal(batches.length, 2);
});
