import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import { mustParse, ResourceInvalidError } from './kind.js';
import { KINDS, parseResource, refOf, resourceKey, RESOURCE_KINDS } from './kinds.js';

test('the registry names every kind meshd reads, each module under its own kind', () => {
  assert.deepEqual([...RESOURCE_KINDS].sort(), [
    'BackendTLSPolicy',
    'CiliumCIDRGroup',
    'CiliumClusterwideNetworkPolicy',
    'CiliumL2AnnouncementPolicy',
    'CiliumLoadBalancerIPPool',
    'CiliumNetworkPolicy',
    'ConfigMap',
    'EndpointSlice',
    'GRPCRoute',
    'Gateway',
    'GatewayClass',
    'HTTPRoute',
    'Namespace',
    'NetworkPolicy',
    'Node',
    'Pod',
    'ReferenceGrant',
    'Secret',
    'Service',
  ]);
  for (const k of RESOURCE_KINDS) assert.equal(KINDS[k].kind, k);
});

test('parseResource dispatches on kind; refs follow the kind’s scope', () => {
  const p = parseResource({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a' } });
  assert.ok(p.ok && p.value.kind === 'Pod');
  assert.equal(resourceKey(refOf(p.value)), 'Pod/default/a');
  const n = parseResource({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
  assert.ok(n.ok);
  assert.equal(resourceKey(refOf(n.value)), 'Node/n1');
  const unknown = parseResource({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' } });
  assert.deepEqual(unknown.ok ? [] : unknown.problems.map((x) => [x.path, x.code]), [[['kind'], 'UNKNOWN_KIND']]);
  assert.equal(parseResource('nope').ok, false);
});

test('mustParse returns the typed object or throws a coded error naming the field', () => {
  assert.equal(mustParse(KINDS.Namespace, { metadata: { name: 'a' } }).metadata.name, 'a');
  assert.throws(
    () => mustParse(KINDS.Service, { metadata: { name: 's' }, spec: { ports: [{ port: 0 }] } }),
    (e) => isMeshdError(e, 'MESHD_RESOURCE_INVALID') && e instanceof ResourceInvalidError && e.problems[0]?.path.join('/') === 'spec/ports/0/port',
  );
});
