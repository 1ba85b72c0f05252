import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CodecError, defineStruct } from './codec.js';

test('codec lays fields out with C natural alignment and pads the tail', () => {
  const S = defineStruct('s', [
    ['a', 'u8'],
    ['b', 'u32'],
    ['c', 'u16'],
    ['d', 'u64'],
    ['e', 'u8'],
  ] as const);
  assert.deepEqual(
    S.fields.map((f) => [f.name, f.offset]),
    [
      ['a', 0],
      ['b', 4],
      ['c', 8],
      ['d', 16],
      ['e', 24],
    ],
  );
  assert.equal(S.size, 32);
});

test('codec round-trips values, with network order for be16/be32', () => {
  const S = defineStruct('k', [
    ['addr', 'be32'],
    ['port', 'be16'],
    ['proto', 'u8'],
    ['pad', 'u8'],
    ['id', 'u32'],
    ['raw', { bytes: 16, align: 4 }],
  ] as const);
  const v = { addr: 0x0a000001, port: 8080, proto: 6, pad: 0, id: 1234, raw: Buffer.alloc(16, 7) };
  const b = S.encode(v);
  assert.equal(b.length, S.size);
  assert.deepEqual(b.subarray(0, 4), Buffer.from([10, 0, 0, 1]));
  assert.deepEqual(b.subarray(4, 6), Buffer.from([0x1f, 0x90]));
  assert.deepEqual(S.decode(b), v);
});

test('codec rejects values of the wrong type naming the field', () => {
  const S = defineStruct('v', [['n', 'u64']] as const);
  assert.throws(() => S.encode({ n: 1 as unknown as bigint }), (e) => e instanceof CodecError && e.code === 'MESHD_CODEC_VALUE_INVALID' && e.field === 'v.n');
  assert.throws(() => S.decode(Buffer.alloc(4)), (e) => e instanceof CodecError && e.code === 'MESHD_CODEC_BUFFER_SHORT' && e.field === 'v');
});
