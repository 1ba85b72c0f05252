import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseResource } from './kinds.js';
import { parseGatewayDuration } from './gateway-api-common.js';

test('an HTTPRoute gets the CRD defaults: one rule matching every path, Gateway parents, weight 1', () => {
  const r = parseResource({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'ns' }, spec: { parentRefs: [{ name: 'gw' }], rules: [{ backendRefs: [{ name: 'svc', port: 80 }] }] } });
  assert.ok(r.ok);
  assert.equal(r.value.kind, 'HTTPRoute');
  if (r.value.kind !== 'HTTPRoute') return;
  assert.deepEqual(r.value.spec.parentRefs[0], { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' });
  assert.deepEqual(r.value.spec.rules[0]?.matches, [{ path: { type: 'PathPrefix', value: '/' } }]);
  assert.equal(r.value.spec.rules[0]?.backendRefs[0]?.weight, 1);
  assert.equal(r.value.spec.rules[0]?.backendRefs[0]?.kind, 'Service');
});

test('unknown fields and filter types are read, not refused (they become conditions later)', () => {
  const r = parseResource({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r' }, spec: { futureField: 1, rules: [{ filters: [{ type: 'CORS', cors: {} }] }] } });
  assert.ok(r.ok);
});

test('a Gateway with two listeners of one name is refused at that name', () => {
  const r = parseResource({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'g' }, spec: { gatewayClassName: 'meshd', listeners: [{ name: 'a', port: 80, protocol: 'HTTP' }, { name: 'a', port: 81, protocol: 'HTTP' }] } });
  assert.equal(r.ok, false);
  if (!r.ok) assert.deepEqual(r.problems[0]?.path, ['spec', 'listeners', 1, 'name']);
});

test('a Gateway listener port out of range is a problem at the field', () => {
  const r = parseResource({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'g' }, spec: { gatewayClassName: 'meshd', listeners: [{ name: 'a', port: 0, protocol: 'HTTP' }] } });
  assert.equal(r.ok, false);
  if (!r.ok) assert.deepEqual(r.problems[0]?.path, ['spec', 'listeners', 0, 'port']);
});

test('GatewayClass, GRPCRoute, ReferenceGrant and BackendTLSPolicy parse', () => {
  for (const o of [
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'meshd' }, spec: { controllerName: 'meshd.io/gateway-controller' } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'g' }, spec: { rules: [{ matches: [{ method: { service: 'a.B' } }] }] } },
    { apiVersion: 'gateway.networking.k8s.io/v1beta1', kind: 'ReferenceGrant', metadata: { name: 'g', namespace: 'b' }, spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'a' }], to: [{ group: '', kind: 'Service' }] } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'BackendTLSPolicy', metadata: { name: 'p' }, spec: { targetRefs: [{ name: 's' }], validation: { hostname: 'x.example', wellKnownCACertificates: 'System' } } },
  ]) {
    const r = parseResource(o);
    assert.ok(r.ok, `${o.kind}: ${JSON.stringify(r.ok ? '' : r.problems)}`);
  }
});

test('Gateway API durations', () => {
  assert.equal(parseGatewayDuration('1h2m3s'), 3_723_000);
  assert.equal(parseGatewayDuration('500ms'), 500);
  assert.equal(parseGatewayDuration('0s'), 0);
  assert.equal(parseGatewayDuration('1.5s'), undefined);
  assert.equal(parseGatewayDuration('10'), undefined);
});
