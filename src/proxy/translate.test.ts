/**
 * The translator without Envoy (its output judged by a real Envoy is in
 * test/integration/proxy-translate-envoy.test.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EndpointPolicy, PolicyEntry } from '../policy/types.js';
import { translateL7 } from './translate.js';

function policy(id: string, ingress: PolicyEntry[], egress: PolicyEntry[] = []): EndpointPolicy {
  return { endpointId: id, identity: 2000, revision: 1, ingress: { defaultDeny: true, entries: ingress }, egress: { defaultDeny: false, entries: egress } };
}

const ports = { portFor: (_k: string, d: string) => (d === 'ingress' ? 15001 : 15002) };

test('non-HTTP L7 redirects are reported as unsupported, not dropped', () => {
  const out = translateL7({
    endpoints: [
      {
        policy: policy('kafka/broker', [
          { remoteIdentity: 0, protocol: 6, port: 9092, endPort: 9092, verdict: 'REDIRECT', derivedFrom: ['kafka/p'], l7: { kind: 'kafka', rules: [{ topic: 'orders' }] } },
        ]),
        ips: ['10.0.1.30'],
      },
    ],
    identityIps: new Map(),
    ports,
  });
  assert.deepEqual(out.listeners, []);
  assert.deepEqual(out.unsupported, [{ endpointId: 'kafka/broker', direction: 'ingress', kind: 'kafka', derivedFrom: ['kafka/p'] }]);
});

test('HTTP upstreams: idle timeout on every cluster, retries only for idempotent methods, both configurable', () => {
  const input = {
    endpoints: [
      {
        policy: policy('default/api', [
          { remoteIdentity: 0, protocol: 6, port: 8080, endPort: 8080, verdict: 'REDIRECT', derivedFrom: ['default/p'], l7: { kind: 'http', rules: [{ method: 'GET', path: '/a' }] } },
        ] as PolicyEntry[]),
        ips: ['10.0.1.30'],
      },
    ],
    identityIps: new Map(),
    ports,
  };
  const routesOf = (o: ReturnType<typeof translateL7>) =>
    o.listeners.flatMap((l) =>
      (l.filter_chains as Array<{ filters: Array<{ typed_config: { route_config?: { virtual_hosts: Array<{ routes: Array<{ route: Record<string, unknown> }> }> } } }> }>).flatMap((c) =>
        c.filters.flatMap((f) => f.typed_config.route_config?.virtual_hosts.flatMap((v) => v.routes.map((r) => r.route)) ?? []),
      ),
    );
  const idleOf = (o: ReturnType<typeof translateL7>) =>
    o.clusters.map((c) => (c.typed_extension_protocol_options as Record<string, { common_http_protocol_options?: { idle_timeout: string } }>)['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']?.common_http_protocol_options?.idle_timeout);

  const byDefault = translateL7(input);
  assert.ok(byDefault.clusters.length > 0 && routesOf(byDefault).length > 0);
  assert.deepEqual(new Set(idleOf(byDefault)), new Set(['60s']));
  for (const r of routesOf(byDefault)) {
    assert.deepEqual(r.retry_policy, {
      retry_on: 'connect-failure,reset,refused-stream',
      num_retries: 3,
      retriable_request_headers: [{ name: ':method', string_match: { safe_regex: { regex: 'GET|HEAD|OPTIONS|TRACE|PUT|DELETE' } } }],
    });
  }

  const configured = translateL7({ ...input, upstream: { idleTimeoutS: 4, retries: 0 } });
  assert.deepEqual(new Set(idleOf(configured)), new Set(['4s']));
  for (const r of routesOf(configured)) assert.equal(r.retry_policy, undefined);
});
