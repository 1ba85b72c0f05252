import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isXdsError } from './errors.js';
import { ResourceCodec, contentVersion } from './resource-codec.js';
import { TYPE_URL } from './type-urls.js';

const codec = new ResourceCodec();

const listener = {
  '@type': TYPE_URL.listeners,
  name: 'ingress',
  address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
  filter_chains: [
    {
      filters: [
        {
          name: 'envoy.filters.network.http_connection_manager',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
            stat_prefix: 'ingress',
            rds: { route_config_name: 'local', config_source: { ads: {}, resource_api_version: 'V3' } },
            http_filters: [
              {
                name: 'envoy.filters.http.router',
                typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
              },
            ],
            common_http_protocol_options: { idle_timeout: '1.5s' },
            max_request_headers_kb: 64,
          },
        },
      ],
    },
  ],
};

test('pack: a listener with nested typed_config round-trips through protobuf', () => {
  const any = codec.pack(listener);
  assert.equal(any.type_url, TYPE_URL.listeners);
  const back = codec.unpack(any);
  assert.equal(back.name, 'ingress');
  const chains = back.filter_chains;
  assert.ok(Array.isArray(chains));
  const hcm = JSON.stringify(chains[0]);
  assert.match(hcm, /"stat_prefix":"ingress"/);
  assert.match(hcm, /"route_config_name":"local"/);
  assert.match(hcm, /envoy\.extensions\.filters\.http\.router\.v3\.Router/);
  assert.match(hcm, /"max_request_headers_kb":\{"value":64\}|"max_request_headers_kb":64/);
  assert.match(hcm, /"idle_timeout":\{"seconds":"1","nanos":500000000\}/);
});

test('pack: the same resource always gets the same content version; a change gets another', () => {
  const a = contentVersion(codec.pack(listener));
  assert.equal(a, contentVersion(codec.pack(structuredClone(listener))));
  assert.notEqual(a, contentVersion(codec.pack({ ...listener, name: 'other' })));
  assert.match(a, /^[0-9a-f]{16}$/);
});

test('pack: camelCase JSON names are accepted like proto names', () => {
  const any = codec.pack({ '@type': TYPE_URL.clusters, name: 'c', connectTimeout: '2s', type: 'STATIC' });
  const back = codec.unpack(any);
  assert.deepEqual(back.connect_timeout, { seconds: '2', nanos: 0 });
  assert.equal(back.type, 'STATIC');
});

function problemsOf(resource: unknown): readonly string[] {
  try {
    codec.pack(resource, 'resources.listeners[0]');
  } catch (e) {
    assert.ok(isXdsError(e, 'MESHD_XDS_RESOURCE_INVALID'), String(e));
    return e.problems;
  }
  assert.fail('expected RESOURCE_INVALID');
}

test('pack: an unknown field deep inside a typed_config is an error naming its path', () => {
  const bad = structuredClone(listener);
  const tc = bad.filter_chains[0]?.filters[0]?.typed_config;
  assert.ok(tc);
  Object.assign(tc, { stat_prefx: 'typo' });
  const problems = problemsOf(bad);
  assert.deepEqual(problems, [
    'resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefx: unknown field of envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  ]);
});

test('pack: wrong scalar types, enum names, durations, oneof conflicts and unknown @type are all reported', () => {
  const problems = problemsOf({
    '@type': TYPE_URL.clusters,
    name: 7,
    type: 'STATIC',
    lb_policy: 'ROUND_ROBINN',
    connect_timeout: 5,
    per_connection_buffer_limit_bytes: -1,
    cluster_type: { name: 'x' },
    transport_socket: { name: 'tls', typed_config: { '@type': 'type.googleapis.com/no.such.Message' } },
  });
  const joined = problems.join('\n');
  assert.match(joined, /resources\.listeners\[0\]\.name: expected a string, got number 7/);
  assert.match(joined, /\.lb_policy: "ROUND_ROBINN" is not a value of envoy\.config\.cluster\.v3\.Cluster\.LbPolicy/);
  assert.match(joined, /\.connect_timeout: expected a duration string like "1\.5s", got number 5/);
  assert.match(joined, /\.per_connection_buffer_limit_bytes: expected an unsigned 32-bit integer, got number -1/);
  assert.match(joined, /\.transport_socket\.typed_config\.@type: unknown message type "type\.googleapis\.com\/no\.such\.Message"/);
  assert.match(joined, /fields "type" and "cluster_type" are alternatives/);
});

test('pack: a resource without @type is refused', () => {
  assert.deepEqual(problemsOf({ name: 'x' }), ['resources.listeners[0].@type: missing (every packed message names its type)']);
});

test('pack: Struct, Value and wrapper types follow the proto3 JSON mapping', () => {
  const any = codec.pack({
    '@type': TYPE_URL.clusters,
    name: 'm',
    metadata: { filter_metadata: { meshd: { a: 1, b: [true, null, 'x'], c: { d: 'e' } } } },
    ignore_health_on_host_removal: true,
    per_connection_buffer_limit_bytes: 32768,
  });
  const back = codec.unpack(any);
  // unpack() shows Struct in its protobuf form: the encoding is what matters here
  assert.equal(
    JSON.stringify(back.metadata),
    JSON.stringify({
      filter_metadata: {
        meshd: {
          fields: {
            a: { numberValue: 1 },
            b: { listValue: { values: [{ boolValue: true }, { nullValue: 'NULL_VALUE' }, { stringValue: 'x' }] } },
            c: { structValue: { fields: { d: { stringValue: 'e' } } } },
          },
        },
      },
    }),
  );
  assert.deepEqual(back.per_connection_buffer_limit_bytes, { value: 32768 });
});

test('pack: commonly used extensions are in the schema (stdout access log, RBAC, original_dst, TLS)', () => {
  for (const t of [
    'envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
    'envoy.extensions.filters.http.rbac.v3.RBAC',
    'envoy.extensions.filters.network.rbac.v3.RBAC',
    'envoy.extensions.filters.listener.original_dst.v3.OriginalDst',
    'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
    'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  ]) {
    assert.ok(codec.typeOf(t), t);
  }
  const any = codec.pack({
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    stat_prefix: 'x',
    access_log: [{ name: 'stdout', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog' } }],
  });
  assert.ok(any.value.length > 0);
});
