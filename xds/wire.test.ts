import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deltaCodec, sotwCodec } from './messages.js';
import { xdsProtos } from './protos.js';
import { ResourceCodec } from './resource-codec.js';
import { TYPE_URL } from './type-urls.js';
import { anyBody, encodeDeltaDiscoveryResponse, encodeDiscoveryResponse, makeAny } from './wire.js';

const codec = new ResourceCodec();
const cluster = (name: string): Record<string, unknown> => ({ '@type': TYPE_URL.clusters, name, type: 'STATIC', connect_timeout: '1s' });

test('wire: a DiscoveryResponse is byte for byte what protobufjs writes, and decodes back', () => {
  const resources = [codec.pack(cluster('a')), codec.pack(cluster('ü-long-name-'.repeat(20))), { type_url: TYPE_URL.clusters, value: new Uint8Array(300).fill(7) }];
  const res = { version_info: 'v1', resources, type_url: TYPE_URL.clusters, nonce: '12' };
  const type = xdsProtos().lookupType('envoy.service.discovery.v3.DiscoveryResponse');
  const reference = Buffer.from(type.encode(type.fromObject(res)).finish());
  const mine = encodeDiscoveryResponse(res);
  assert.deepEqual(mine, reference);
  const back = sotwCodec().decodeResponse(mine);
  assert.equal(back.version_info, 'v1');
  assert.equal(back.nonce, '12');
  assert.deepEqual(back.resources.map((r) => Buffer.from(r.value)), resources.map((r) => Buffer.from(r.value)));
  assert.ok(back.resources.every((r) => r.type_url === TYPE_URL.clusters));
});

test('wire: a DeltaDiscoveryResponse decodes to what was given (resources, removals, an empty removed name)', () => {
  const any = codec.pack(cluster('b'));
  const res = {
    system_version_info: 'v2',
    resources: [{ name: 'b', version: 'abc', resource: any }],
    type_url: TYPE_URL.clusters,
    removed_resources: ['gone', ''],
    nonce: '3',
  };
  const back = deltaCodec().decodeResponse(encodeDeltaDiscoveryResponse(res));
  assert.equal(back.system_version_info, 'v2');
  assert.equal(back.nonce, '3');
  assert.equal(back.type_url, TYPE_URL.clusters);
  assert.deepEqual(back.removed_resources, ['gone', '']);
  assert.equal(back.resources.length, 1);
  assert.equal(back.resources[0]?.name, 'b');
  assert.equal(back.resources[0]?.version, 'abc');
  assert.deepEqual(Buffer.from(back.resources[0]?.resource.value ?? []), Buffer.from(any.value));
  assert.deepEqual(codec.unpack(back.resources[0]?.resource ?? any), codec.unpack(any));
});

test('wire: an Any is encoded once; makeAny keeps the value inside the body it remembers', () => {
  const value = new Uint8Array([1, 2, 3]);
  const any = makeAny(TYPE_URL.clusters, value);
  assert.deepEqual(Buffer.from(any.value), Buffer.from(value));
  const body = anyBody(any);
  assert.equal(any.value.buffer, body.buffer);
  const plain = { type_url: TYPE_URL.clusters, value };
  assert.equal(anyBody(plain), anyBody(plain));
  assert.deepEqual(Buffer.from(anyBody(plain)), Buffer.from(body));
});

test('wire: an empty response writes no fields', () => {
  assert.equal(encodeDiscoveryResponse({ version_info: '', resources: [], type_url: '', nonce: '' }).length, 0);
});
