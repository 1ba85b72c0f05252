import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LocalIdentityAllocator } from '../identity/allocator.js';
import { podLabels } from '../identity/labels.js';
import { SelectorCache } from './selector-cache.js';
import { labelSelector } from './selector.js';

test('a selector is evaluated once, shared, kept up to date, and dropped at the last release', async () => {
  const alloc = new LocalIdentityAllocator();
  const web = await alloc.allocate(podLabels({ namespace: 'default', labels: { app: 'web' } }));
  await alloc.allocate(podLabels({ namespace: 'default', labels: { app: 'db' } }));
  const cache = new SelectorCache({ identities: () => alloc.all(), fqdnMatches: () => false });
  const sel = labelSelector([{ source: 'k8s', key: 'app', op: 'In', values: ['web'] }]);
  const a = cache.acquire(sel);
  const evals = cache.evaluations;
  assert.ok(evals >= 2);
  const b = cache.acquire(labelSelector([{ source: 'k8s', key: 'app', op: 'In', values: ['web'] }]));
  assert.equal(a, b);
  assert.equal(cache.evaluations, evals);
  assert.deepEqual([...a.ids], [web.id]);

  const web2 = await alloc.allocate(podLabels({ namespace: 'other', labels: { app: 'web' } }));
  assert.deepEqual(cache.identityAdded(web2), [a]);
  assert.deepEqual([...a.ids].sort(), [web.id, web2.id].sort());
  assert.deepEqual(cache.identityRemoved(web), [a]);
  assert.deepEqual([...a.ids], [web2.id]);

  cache.release(sel);
  assert.equal(cache.size, 1);
  cache.release(sel);
  assert.equal(cache.size, 0);
});

test('selector keys are canonical: requirement order does not matter, values are a set', () => {
  const x = labelSelector([
    { source: 'any', key: 'a', op: 'In', values: ['1', '2'] },
    { source: 'k8s', key: 'b', op: 'Exists', values: [] },
  ]);
  const y = labelSelector([
    { source: 'k8s', key: 'b', op: 'Exists', values: [] },
    { source: 'any', key: 'a', op: 'In', values: ['2', '1'] },
  ]);
  assert.equal(x.key, y.key);
  assert.notEqual(x.key, labelSelector([{ source: 'k8s', key: 'a', op: 'In', values: ['1', '2'] }]).key);
});
