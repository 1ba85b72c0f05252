import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeAddr, encodeAddr, ipFamily, SvcKey } from './lb-maps.js';

test('addresses are 16 bytes, IPv4 mapped into IPv6, and decode back', () => {
  assert.equal(encodeAddr('10.96.0.10').toString('hex'), '00000000000000000000ffff0a60000a');
  assert.equal(decodeAddr(encodeAddr('10.96.0.10')), '10.96.0.10');
  assert.equal(decodeAddr(encodeAddr('fd00::1')), 'fd00::1');
  assert.equal(ipFamily('10.1.2.3'), '4');
  assert.equal(ipFamily('fd00::1'), '6');
  assert.equal(ipFamily('10.1.2'), null);
  assert.equal(ipFamily('300.1.2.3'), null);
  assert.equal(ipFamily('not-an-ip'), null);
});

test('service keys put the port in network order and the slot in host order', () => {
  const k = SvcKey.encode({ addr: encodeAddr('10.0.0.1'), port: 80, proto: 6, pad0: 0, slot: 2, pad: 0 });
  assert.equal(k.length, 24);
  assert.deepEqual([...k.subarray(16, 22)], [0, 80, 6, 0, 2, 0]);
});
