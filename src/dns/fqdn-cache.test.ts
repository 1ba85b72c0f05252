import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FqdnCache } from '../policy/dns-cache.js';

test('FqdnCache: per endpoint, TTL raised to minTtl, union for the engine, change notifications only on real change', () => {
  const c = new FqdnCache({ minTtlSeconds: 10 });
  const heard: string[][] = [];
  c.subscribe((n) => heard.push(n));
  assert.equal(c.observe('ns/a', 'API.example.com.', ['192.0.2.1'], 1, 1000), true);
  assert.equal(c.observe('ns/a', 'api.example.com', ['192.0.2.1'], 1, 2000), false, 'same address again: no change');
  assert.equal(c.observe('ns/b', 'api.example.com', ['192.0.2.2'], 100, 2000), true);
  assert.deepEqual(c.lookup('api.example.com'), ['192.0.2.1', '192.0.2.2']);
  assert.deepEqual(heard, [['api.example.com'], ['api.example.com']]);
  const a = c.list('ns/a');
  assert.equal(a.length, 1);
  assert.deepEqual(a[0]?.ips.map((i) => [i.ip, i.ttl, i.expiresAt, i.source]), [['192.0.2.1', 1, 12_000, 'dns']]);
  // Expired but in use: stays. Not in use: goes; b's address is still there.
  assert.deepEqual(c.expire(13_000, (ip) => ip === '192.0.2.1'), []);
  assert.deepEqual(c.expire(13_000), ['api.example.com']);
  assert.deepEqual(c.lookup('api.example.com'), ['192.0.2.2']);
});

test('FqdnCache: at most maxIpsPerHost per endpoint and name; the ones expiring first go', () => {
  const c = new FqdnCache({ maxIpsPerHost: 2 });
  c.observe('e', 'n.example', ['192.0.2.1'], 10, 0);
  c.observe('e', 'n.example', ['192.0.2.2'], 20, 0);
  c.observe('e', 'n.example', ['192.0.2.3'], 5, 0);
  assert.deepEqual(c.lookup('n.example'), ['192.0.2.2', '192.0.2.3']);
});

test('FqdnCache: dump and restore keep the entries, marked restored; grace keeps expired ones a while', () => {
  const c = new FqdnCache({ graceMs: 5000 });
  c.observe('e', 'n.example', ['192.0.2.1', '2001:db8::1'], 10, 0);
  const r = new FqdnCache({ graceMs: 5000 });
  r.restore(JSON.parse(JSON.stringify(c.dump())));
  assert.deepEqual(r.lookup('n.example'), ['192.0.2.1', '2001:db8::1']);
  assert.deepEqual(r.list()[0]?.ips.map((i) => i.source), ['restored', 'restored']);
  assert.deepEqual(r.expire(12_000), [], 'within the grace period');
  assert.deepEqual(r.expire(15_000), ['n.example']);
  assert.deepEqual([...r.names()], []);
});

test('FqdnCache: a restored cache lists names in the order their first address was learned, across endpoints', () => {
  const c = new FqdnCache();
  c.observe('ns/b', 'first.example', ['192.0.2.1'], 60, 0);
  c.observe('ns/a', 'second.example', ['192.0.2.2'], 60, 1);
  c.observe('ns/b', 'third.example', ['192.0.2.3'], 60, 2);
  const r = new FqdnCache();
  r.restore(JSON.parse(JSON.stringify(c.dump())));
  assert.deepEqual([...r.names()], ['first.example', 'second.example', 'third.example']);
  // New names after a restore come after the restored ones.
  r.observe('ns/a', 'fourth.example', ['192.0.2.4'], 60, 3);
  assert.deepEqual([...r.names()].at(-1), 'fourth.example');
});
