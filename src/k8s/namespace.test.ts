import assert from 'node:assert/strict';
import { test } from 'node:test';
import { namespace } from './namespace.js';

test('a Namespace parses with its labels (none: empty)', () => {
  const r = namespace.parse({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { team: 'a' } } });
  assert.ok(r.ok);
  assert.deepEqual(r.value.metadata.labels, { team: 'a' });
  const bare = namespace.parse({ kind: 'Namespace', metadata: { name: 'ops' } });
  assert.ok(bare.ok);
  assert.deepEqual(bare.value.metadata.labels, {});
});

test('a non-string label value is reported at its path', () => {
  const r = namespace.parse({ kind: 'Namespace', metadata: { name: 'shop', labels: { team: 7 } } });
  assert.deepEqual(r.ok ? [] : r.problems.map((p) => [p.path, p.code]), [[['metadata', 'labels', 'team'], 'WRONG_TYPE']]);
  assert.equal(namespace.scope, 'cluster');
});
