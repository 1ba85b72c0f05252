import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KINDS, parseResource, refOf, resourceKey, RESOURCE_KINDS } from './kinds.js';

test('the registry names every kind meshd reads, each module under its own kind', () => {
  assert.deepEqual([...RESOURCE_KINDS].sort(), [
    'CiliumClusterwideNetworkPolicy',
    'CiliumNetworkPolicy',
    'EndpointSlice',
    'Namespace',
    'NetworkPolicy',
    'Node',
    'Pod',
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
  const unknown = parseResource({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } });
  assert.deepEqual(unknown.ok ? [] : unknown.problems.map((x) => [x.path, x.code]), [[['kind'], 'UNKNOWN_KIND']]);
  assert.equal(parseResource('nope').ok, false);
});
