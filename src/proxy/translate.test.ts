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
