import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ciliumClusterwideNetworkPolicy } from './cilium-clusterwide-network-policy.js';
import { ciliumNetworkPolicy } from './cilium-network-policy.js';
import { networkPolicy } from './network-policy.js';
import type { ParseResult } from './problem.js';

const paths = <T>(r: ParseResult<T>) => (r.ok ? [] : r.problems.map((p) => [p.path, p.code]));

test('CiliumNetworkPolicy: schema problems and semantic problems both carry array paths', () => {
  const good = { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'shop' }, spec: { endpointSelector: {}, ingress: [{ fromEndpoints: [{}] }] } };
  assert.ok(ciliumNetworkPolicy.parse(good).ok);
  assert.deepEqual(paths(ciliumNetworkPolicy.parse({ ...good, spec: { endpointSelector: {}, ingress: [{ fromEndpoint: [] }] } })), [[['spec', 'ingress', 0, 'fromEndpoint'], 'UNKNOWN_FIELD']]);
  assert.deepEqual(paths(ciliumNetworkPolicy.parse({ ...good, spec: { endpointSelector: {}, egress: [{ toPorts: [{ ports: [{ port: '0' }] }] }] } })), [
    [['spec', 'egress', 0, 'toPorts', 0, 'ports', 0, 'port'], 'INVALID_PORT'],
  ]);
  assert.deepEqual(paths(ciliumNetworkPolicy.parse({ ...good, spec: { nodeSelector: {} } })), [[['spec', 'nodeSelector'], 'NODE_SELECTOR_NAMESPACED']]);
});

test('CiliumClusterwideNetworkPolicy is cluster-scoped and may select nodes', () => {
  const r = ciliumClusterwideNetworkPolicy.parse({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'h' }, spec: { nodeSelector: {} } });
  assert.ok(r.ok);
  assert.equal(ciliumClusterwideNetworkPolicy.scope, 'cluster');
  assert.deepEqual(paths(ciliumClusterwideNetworkPolicy.parse({ apiVersion: 'cilium.io/v1', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'h' }, spec: {} })), [
    [['apiVersion'], 'INVALID_VALUE'],
  ]);
});

test('NetworkPolicy: peers and port ranges are checked', () => {
  const np = (spec: unknown) => networkPolicy.parse({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'n' }, spec });
  assert.ok(np({ podSelector: {}, ingress: [{ from: [{ podSelector: {} }], ports: [{ port: 80 }] }] }).ok);
  assert.deepEqual(paths(np({ podSelector: {}, ingress: [{ from: [{}] }] })), [[['spec', 'ingress', 0, 'from', 0], 'INVALID_VALUE']]);
  assert.deepEqual(paths(np({})), [[['spec', 'podSelector'], 'WRONG_TYPE']]);
});
