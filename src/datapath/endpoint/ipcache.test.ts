import assert from 'node:assert/strict';
import { test } from 'node:test';
import { desiredIpcache, diffIpcache, ipcacheKey, IpcacheError, parsePrefix, PrefixCache, prefixFromKey } from './ipcache.js';

test('prefixes are normalised: host bits cleared, bare addresses are whole, IPv4-mapped IPv6 is IPv4', () => {
  assert.equal(parsePrefix('10.1.2.3/16').cidr, '10.1.0.0/16');
  assert.equal(parsePrefix('10.1.2.3').cidr, '10.1.2.3/32');
  assert.equal(parsePrefix('fd00::1').cidr, 'fd00::1/128');
  assert.equal(parsePrefix('fd00:1:2:3::5/48').cidr, 'fd00:1:2::/48');
  assert.deepEqual([parsePrefix('::ffff:10.0.0.1/128').cidr, parsePrefix('::ffff:10.0.0.1/128').family], ['10.0.0.1/32', 4]);
  assert.throws(() => parsePrefix('10.0.0.300/8', 'ipcache[3].prefix'), (e: unknown) => e instanceof IpcacheError && e.code === 'MESHD_IPCACHE_BAD_PREFIX' && e.where === 'ipcache[3].prefix');
});

test('LPM keys carry 32 bits of family and padding before the address bits, and decode back', () => {
  const k = ipcacheKey(parsePrefix('10.1.0.0/16'));
  assert.equal(k.readUInt32LE(0), 48);
  assert.equal(k[4], 4);
  assert.deepEqual([...k.subarray(8, 12)], [10, 1, 0, 0]);
  assert.equal(prefixFromKey(k).cidr, '10.1.0.0/16');
  assert.equal(prefixFromKey(ipcacheKey(parsePrefix('fd00::/8'))).cidr, 'fd00::/8');
});

test('a prefix given two identities is refused; the diff puts before it deletes and skips what is unchanged', () => {
  assert.throws(
    () =>
      desiredIpcache([
        { prefix: '10.0.0.0/8', identity: 5 },
        { prefix: '10.1.0.0/8', identity: 6 },
      ]),
    (e: unknown) => e instanceof IpcacheError && e.code === 'MESHD_IPCACHE_DUPLICATE',
  );
  const current = new Map([
    ['10.0.0.1/32', 100],
    ['10.0.0.2/32', 200],
    ['10.0.0.3/32', 300],
  ]);
  const ops = diffIpcache(
    current,
    desiredIpcache([
      { prefix: '10.0.0.1', identity: 100 },
      { prefix: '10.0.0.2', identity: 201 },
      { prefix: '10.0.0.4', identity: 400 },
    ]),
  );
  assert.deepEqual(
    ops.map((o) => `${o.op} ${o.prefix.cidr}${o.op === 'put' ? ` ${o.identity}` : ''}`),
    ['put 10.0.0.2/32 201', 'put 10.0.0.4/32 400', 'delete 10.0.0.3/32'],
  );
});

test('the prefix cache parses each address once while it stays, and agrees with a fresh parse', () => {
  const cache = new PrefixCache();
  const pods = Array.from({ length: 2000 }, (_, i) => ({ prefix: `10.${(i >> 8) & 255}.${i & 255}.7`, identity: 300 + (i % 40) }));
  const first = cache.desired(pods);
  assert.equal(cache.parses, 2000);
  assert.deepEqual(first, desiredIpcache(pods));

  // One pod replaced, one relabelled: only the new address is parsed; the diff is exactly those changes.
  const next = [...pods.slice(1), { prefix: '10.200.0.1', identity: 999 }];
  next[5] = { prefix: next[5]?.prefix ?? '', identity: 12345 };
  const second = cache.desired(next);
  assert.equal(cache.parses, 2001);
  assert.equal(cache.size, 2000);
  assert.deepEqual(second, desiredIpcache(next));
  const ops = diffIpcache(first, second);
  assert.deepEqual(
    ops.map((o) => `${o.op} ${o.prefix.cidr}${o.op === 'put' ? ` ${o.identity}` : ''}`),
    ['put 10.0.6.7/32 12345', 'put 10.200.0.1/32 999', 'delete 10.0.0.7/32'],
  );
});

test('a refused set leaves the prefix cache as it was', () => {
  const cache = new PrefixCache();
  const good = [{ prefix: '10.0.0.1/32', identity: 300 }, { prefix: '10.1.0.0/16', identity: 301 }];
  cache.desired(good);
  assert.throws(() => cache.desired([...good, { prefix: '10.0.0.300', identity: 5 }]), (e) => e instanceof IpcacheError && e.code === 'MESHD_IPCACHE_BAD_PREFIX' && e.where === 'ipcache[2].prefix');
  assert.throws(() => cache.desired([...good, { prefix: '10.0.0.1', identity: 5 }]), (e) => e instanceof IpcacheError && e.code === 'MESHD_IPCACHE_DUPLICATE');
  const parses = cache.parses;
  cache.desired(good);
  assert.equal(cache.parses, parses);
  assert.equal(cache.size, 2);
});
