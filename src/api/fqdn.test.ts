/**
 * The flush route's body is validated at the boundary: a name or a
 * matchPattern, an endpoint id, nothing else.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FqdnCacheFlushRequest } from './fqdn.js';

test('fqdn cache flush: accepts a name, a pattern, an endpoint or nothing; rejects anything else, naming the field', () => {
  for (const ok of [{}, { name: 'api.github.com' }, { name: '*.example.com' }, { name: 'API.GitHub.com.' }, { endpoint: 'default/app' }, { name: 'a.b', endpoint: 'ns/pod' }]) {
    assert.ok(FqdnCacheFlushRequest.safeParse(ok).success, JSON.stringify(ok));
  }
  for (const [bad, field] of [
    [{ name: '' }, 'name'],
    [{ name: 'a b.example.com' }, 'name'],
    [{ name: 'x'.repeat(256) }, 'name'],
    [{ endpoint: '' }, 'endpoint'],
    [{ name: 'a.example.com', ips: ['1.2.3.4'] }, ''],
  ] as const) {
    const r = FqdnCacheFlushRequest.safeParse(bad);
    assert.equal(r.success, false, JSON.stringify(bad));
    if (field !== '') assert.deepEqual([...new Set(r.error?.issues.map((i) => i.path.join('.')))], [field]);
  }
});
