import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDnsCache } from './dns-cache.js';

test('observed answers are kept for max(TTL, min TTL), merged, and expire with one notification', () => {
  const dns = new MemoryDnsCache({ minTtlSeconds: 10 });
  const seen: string[][] = [];
  dns.subscribe((names) => seen.push(names));
  dns.observe('API.example.com.', ['192.0.2.1'], 5, 0);
  dns.observe('api.example.com', ['192.0.2.2'], 60, 1000);
  dns.observe('api.example.com', ['192.0.2.1'], 1, 2000); // no change: no notification
  assert.deepEqual(dns.lookup('api.example.com'), ['192.0.2.1', '192.0.2.2']);
  assert.deepEqual(seen, [['api.example.com'], ['api.example.com']]);
  assert.deepEqual(dns.expire(11_999), []);
  assert.deepEqual(dns.expire(12_000), ['api.example.com']); // 192.0.2.1 refreshed at t=2 s for 10 s
  assert.deepEqual(dns.lookup('api.example.com'), ['192.0.2.2']);
  assert.deepEqual(dns.expire(61_000), ['api.example.com']);
  assert.deepEqual([...dns.names()], []);
  assert.equal(seen.length, 4);
});

test('set replaces and never expires', () => {
  const dns = new MemoryDnsCache();
  dns.set('a.example', ['192.0.2.9']);
  assert.deepEqual(dns.expire(Number.MAX_SAFE_INTEGER), []);
  dns.set('a.example', []);
  assert.deepEqual(dns.lookup('a.example'), []);
});
