/**
 * The codec against traffic captured from a real Kafka 4.4 broker with kafkajs
 * and Kafka's own Java clients (test/fixtures/kafka, made by
 * test/helpers/kafka-capture.ts), and the error responses against kafkajs's
 * own response decoders.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { KAFKA_API_KEYS } from '../policy/l7-match.js';
import { isMeshdError } from '../util/errors.js';
import { repoPath } from '../util/paths.js';
import { APIS, ApiKey, KafkaErrorCode } from './api.js';
import { KafkaConnection } from './connection.js';
import { FrameSplitter, withSize } from './frame.js';
import { apiName, decide } from './policy.js';
import { parseRequest } from './request.js';
import { errorResponse } from './response.js';
import { Reader, Writer } from './wire.js';

const require = createRequire(import.meta.url);
const FIXTURES = repoPath('test', 'fixtures', 'kafka');
const fixture = (name: string): Buffer => readFileSync(`${FIXTURES}/${name}`);
const connections = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('-requests.bin'))
  .map((f) => f.slice(0, -'-requests.bin'.length))
  .sort();

function requests(conn: string) {
  return new FrameSplitter().push(fixture(`${conn}-requests.bin`)).map(parseRequest);
}

test('captured kafkajs requests: API, version, client ID, topics and groups', () => {
  const seen = connections.filter((c) => c.startsWith('kafkajs')).flatMap(requests);
  const summary = seen.map((r) => `${r.apiKey}v${r.apiVersion} ${r.clientId} ${(r.topics ?? []).map((t) => `${t.name}[${t.partitions.join(',')}]`).join(' ')} ${r.groups.join(' ')}`.trim());
  assert.ok(seen.every((r) => r.readable && r.clientId === 'order-service'));
  assert.ok(summary.includes('0v7 order-service orders[1]'), 'produce to orders, partition 1');
  assert.ok(summary.includes('1v11 order-service orders[0,1]'), 'fetch of orders');
  assert.ok(summary.includes('2v3 order-service orders[0,1]'), 'list offsets of orders');
  assert.ok(summary.includes('3v6 order-service orders[]'), 'metadata for orders');
  assert.ok(summary.includes('8v5 order-service orders[1] order-consumer-group'), 'offset commit');
  assert.ok(summary.includes('9v4 order-service orders[0,1] order-consumer-group'), 'offset fetch');
  for (const k of [ApiKey.FindCoordinator, ApiKey.JoinGroup, ApiKey.SyncGroup, ApiKey.LeaveGroup]) {
    assert.ok(seen.some((r) => r.apiKey === k && r.groups[0] === 'order-consumer-group'), `group API ${k}`);
  }
  assert.equal(seen.find((r) => r.apiKey === ApiKey.Produce)?.acks, -1);
});

test('captured Java client requests: flexible versions read; topic-ID versions above the cap are not', () => {
  const seen = connections.filter((c) => c.startsWith('java')).flatMap(requests);
  const meta = seen.find((r) => r.apiKey === ApiKey.Metadata && r.apiVersion >= 12);
  assert.deepEqual(meta?.topics, [{ name: 'orders', partitions: [] }]);
  assert.equal(meta?.clientId, 'java-producer');
  const fc = seen.find((r) => r.apiKey === ApiKey.FindCoordinator);
  assert.ok(fc && fc.apiVersion >= 4 && fc.readable);
  assert.deepEqual(fc.groups, ['java-group']);
  assert.ok(seen.some((r) => r.apiKey === ApiKey.JoinGroup && r.apiVersion >= 6 && r.groups[0] === 'java-group'));
  const produce = seen.find((r) => r.apiKey === ApiKey.Produce);
  assert.ok(produce && produce.apiVersion >= 13 && !produce.readable, 'Produce ≥ 13 names topics by ID: not read');
  assert.ok(seen.filter((r) => r.apiKey === ApiKey.Fetch).every((r) => r.apiVersion > 12 && !r.readable));
});

test('allowed traffic passes unchanged; the ApiVersions answer is capped to what the codec reads', () => {
  for (const conn of connections) {
    const c = new KafkaConnection({ rules: () => [[{}]] });
    const reqIn = fixture(`${conn}-requests.bin`);
    const resIn = fixture(`${conn}-responses.bin`);
    const reqs = requests(conn);
    const up = c.onRead(reqIn);
    if (reqs.some((r) => !r.readable)) continue; // a rule without topic lets those through; compared below only for readable streams
    assert.equal(up.close, false, conn);
    assert.ok(up.data.equals(reqIn), `${conn}: requests unchanged`);
    const down = c.onWrite(resIn);
    assert.equal(down.close, false, conn);
    assert.equal(down.data.length, resIn.length, `${conn}: responses keep their length`);
    const frames = new FrameSplitter().push(down.data);
    frames.forEach((f, i) => {
      const req = reqs[i];
      if (req?.apiKey !== ApiKey.ApiVersions) {
        assert.ok(f.equals(new FrameSplitter().push(resIn)[i] ?? Buffer.alloc(0)), `${conn}: response ${i} unchanged`);
        return;
      }
      const r = new Reader(f, 4, req.apiVersion >= 3);
      assert.equal(r.int16(), 0);
      const n = r.arrayLength();
      for (let k = 0; k < n; k++) {
        const key = r.int16();
        r.int16();
        const max = r.int16();
        r.taggedFields();
        const cap = APIS.get(key)?.maxVersion;
        if (cap !== undefined) assert.ok(max <= cap, `api ${key} advertised up to ${max}, cap ${cap}`);
      }
    });
  }
});

/** The broker's answer to the ApiVersions v0 stand-in: error 0, no keys. */
function apiVersionsV0Answer(correlationId: number): Buffer {
  return withSize(new Writer().int32(correlationId).int16(0).int32(0).build());
}

test('a denied produce is answered with TOPIC_AUTHORIZATION_FAILED, in order, and kafkajs reads it as its protocol error', async () => {
  const conn = 'kafkajs-1';
  const reqs = requests(conn);
  const produce = reqs.find((r) => r.apiKey === ApiKey.Produce);
  assert.ok(produce);
  const c = new KafkaConnection({ rules: () => [[{ role: 'consume', topic: 'orders' }]] });
  const up = c.onRead(fixture(`${conn}-requests.bin`));
  assert.equal(up.close, false);
  const sent = new FrameSplitter().push(up.data).map(parseRequest);
  assert.deepEqual(
    sent.map((r) => [r.apiKey, r.correlationId]),
    reqs.map((r) => [r.apiKey === ApiKey.Produce ? ApiKey.ApiVersions : r.apiKey, r.correlationId]),
    'the produce is replaced by an ApiVersions request with its correlation ID',
  );
  // The broker answers the two requests before the produce, then the stand-in.
  const brokerFrames = new FrameSplitter().push(fixture(`${conn}-responses.bin`)).slice(0, 2);
  const down = c.onWrite(Buffer.concat([...brokerFrames.map(withSize), apiVersionsV0Answer(produce.correlationId)]));
  const out = new FrameSplitter().push(down.data);
  assert.equal(out.length, 3);
  assert.equal(out[2]?.readInt32BE(0), produce.correlationId);
  const v7 = require('kafkajs/src/protocol/requests/produce/v7/response') as { decode(b: Buffer): Promise<unknown>; parse(d: unknown): Promise<unknown> };
  const decoded = await v7.decode(out[2]?.subarray(4) ?? Buffer.alloc(0));
  await assert.rejects(v7.parse(decoded), (e: unknown) => e instanceof Error && e.name === 'KafkaJSProtocolError' && (e as Error & { type?: string }).type === 'TOPIC_AUTHORIZATION_FAILED');
  assert.deepEqual(c.decisions, { allowed: 2, denied: 1 });
});

test('error responses decode with kafkajs for the versions it speaks', async () => {
  const cases: Array<[string, number, number, string]> = [
    ['fetch/v11', ApiKey.Fetch, 11, 'TOPIC_AUTHORIZATION_FAILED'],
    ['listOffsets/v3', ApiKey.ListOffsets, 3, 'TOPIC_AUTHORIZATION_FAILED'],
    ['metadata/v6', ApiKey.Metadata, 6, 'TOPIC_AUTHORIZATION_FAILED'],
    ['offsetCommit/v5', ApiKey.OffsetCommit, 5, 'GROUP_AUTHORIZATION_FAILED'],
    ['offsetFetch/v4', ApiKey.OffsetFetch, 4, 'GROUP_AUTHORIZATION_FAILED'],
    ['findCoordinator/v2', ApiKey.FindCoordinator, 2, 'GROUP_AUTHORIZATION_FAILED'],
    ['joinGroup/v5', ApiKey.JoinGroup, 5, 'GROUP_AUTHORIZATION_FAILED'],
    ['syncGroup/v3', ApiKey.SyncGroup, 3, 'GROUP_AUTHORIZATION_FAILED'],
    ['heartbeat/v3', ApiKey.Heartbeat, 3, 'GROUP_AUTHORIZATION_FAILED'],
    // leaveGroup/v3: kafkajs's own parse leaves a rejected promise unobserved (it rejects twice); v2 shares the error layout
    ['leaveGroup/v2', ApiKey.LeaveGroup, 2, 'GROUP_AUTHORIZATION_FAILED'],
    ['apiVersions/v2', ApiKey.ApiVersions, 2, 'CLUSTER_AUTHORIZATION_FAILED'],
    ['saslHandshake/v1', ApiKey.SaslHandshake, 1, 'UNSUPPORTED_SASL_MECHANISM'],
    ['saslAuthenticate/v0', ApiKey.SaslAuthenticate, 0, 'SASL_AUTHENTICATION_FAILED'],
    ['saslAuthenticate/v1', ApiKey.SaslAuthenticate, 1, 'SASL_AUTHENTICATION_FAILED'],
  ];
  const codes: Record<string, number> = KafkaErrorCode;
  for (const [path, apiKey, apiVersion, type] of cases) {
    const req = {
      apiKey,
      apiVersion,
      correlationId: 7,
      clientId: 'c',
      readable: true,
      topics: [{ name: 'orders', partitions: [0, 1] }],
      allTopics: false,
      groups: ['g'],
      members: [{ memberId: 'm', groupInstanceId: null }],
      coordinatorKeys: { keyType: 0, keys: ['g'] },
    };
    const frame = errorResponse(req, codes[type] ?? -1);
    assert.ok(frame, path);
    assert.equal(frame.readInt32BE(0), frame.length - 4, `${path}: size`);
    const m = require(`kafkajs/src/protocol/requests/${path}/response`) as { decode(b: Buffer): Promise<unknown>; parse(d: unknown): Promise<unknown> };
    await assert.rejects(
      async () => m.parse(await m.decode(frame.subarray(8))),
      (e: unknown) => e instanceof Error && (e as Error & { type?: string }).type === type,
      path,
    );
  }
});

test('a response that answers no request in flight closes the connection', () => {
  const c = new KafkaConnection({ rules: () => [[{}]] });
  const r = c.onWrite(apiVersionsV0Answer(42));
  assert.equal(r.close, true);
  assert.equal(r.reason, 'MESHD_KAFKA_MALFORMED');
});

test('an unlisted client ID is refused from its first request (ApiVersions, CLUSTER_AUTHORIZATION_FAILED)', () => {
  const c = new KafkaConnection({ rules: () => [[{ role: 'produce', topic: 'orders', clientID: 'someone-else' }]] });
  const up = c.onRead(fixture('kafkajs-1-requests.bin'));
  assert.equal(up.close, false);
  const down = c.onWrite(Buffer.concat(new FrameSplitter().push(up.data).map((f) => apiVersionsV0Answer(f.readInt32BE(4)))));
  const first = new FrameSplitter().push(down.data)[0];
  assert.ok(first);
  assert.equal(new Reader(first, 4).int16(), KafkaErrorCode.CLUSTER_AUTHORIZATION_FAILED);
});

test('unreadable requests close the connection unless a topic-free rule allows them', () => {
  const javaProduce = fixture('java-1-requests.bin');
  assert.equal(new KafkaConnection({ rules: () => [[{ role: 'produce', topic: 'orders' }]] }).onRead(javaProduce).close, true);
  assert.equal(new KafkaConnection({ rules: () => [[{}]] }).onRead(javaProduce).close, false);
  // A frame too short for its own header.
  const r = new KafkaConnection({ rules: () => [[{}]] }).onRead(Buffer.from('00000003000001', 'hex'));
  assert.equal(r.close, true);
  assert.equal(r.reason, 'MESHD_KAFKA_MALFORMED');
});

/** A small deterministic PRNG, so a failing fuzz case can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test('fuzz: mutated captured frames parse or fail with a Kafka error; random chunking changes nothing', () => {
  const rand = rng(0x6b61666b);
  const frames = connections.flatMap((c) => new FrameSplitter().push(fixture(`${c}-requests.bin`)));
  for (let i = 0; i < 20_000; i++) {
    const f = Buffer.from(frames[Math.floor(rand() * frames.length)] ?? Buffer.alloc(0));
    const flips = 1 + Math.floor(rand() * 4);
    for (let j = 0; j < flips; j++) f[Math.floor(rand() * f.length)] = Math.floor(rand() * 256);
    const cut = rand() < 0.2 ? f.subarray(0, Math.floor(rand() * f.length)) : f;
    try {
      parseRequest(cut);
    } catch (e) {
      assert.ok(isMeshdError(e) && e.code.startsWith('MESHD_KAFKA_'), `case ${i}: ${String(e)}`);
    }
    const c = new KafkaConnection({ rules: () => [[{ role: 'consume', topic: 'orders' }]] });
    const r = c.onRead(withSize(cut));
    assert.equal(typeof r.close, 'boolean');
  }
  // Responses: mutated broker bytes after real requests never throw; they pass or close the connection.
  for (let i = 0; i < 2000; i++) {
    const conn = connections[Math.floor(rand() * connections.length)] ?? '';
    const res = Buffer.from(fixture(`${conn}-responses.bin`));
    for (let j = 0; j < 1 + Math.floor(rand() * 4); j++) res[Math.floor(rand() * res.length)] = Math.floor(rand() * 256);
    const c = new KafkaConnection({ rules: () => [[{}]] });
    c.onRead(fixture(`${conn}-requests.bin`));
    const r = c.onWrite(res);
    assert.ok(!r.close || (r.reason ?? '').startsWith('MESHD_KAFKA_'), `response case ${i}: ${String(r.reason)}`);
  }
  for (const conn of connections.filter((c) => c.startsWith('kafkajs'))) {
    const whole = new KafkaConnection({ rules: () => [[{}]] }).onRead(fixture(`${conn}-requests.bin`)).data;
    const c = new KafkaConnection({ rules: () => [[{}]] });
    const bytes = fixture(`${conn}-requests.bin`);
    const parts: Buffer[] = [];
    for (let at = 0; at < bytes.length; ) {
      const n = 1 + Math.floor(rand() * 40);
      parts.push(c.onRead(bytes.subarray(at, at + n)).data);
      at += n;
    }
    assert.ok(Buffer.concat(parts).equals(whole), conn);
  }
});

test("the Java producer's InitProducerId (no transactional ID) is allowed by role produce; refused, it gets the API's own error", () => {
  const init = requests('java-0').find((r) => r.apiKey === ApiKey.InitProducerId);
  assert.ok(init);
  assert.equal(init.transactionalId, null);
  assert.deepEqual(decide([{ role: 'produce', topic: 'orders' }], init), { verdict: 'allow' });
  assert.deepEqual(decide([{ role: 'consume', topic: 'orders' }], init), { verdict: 'deny', code: KafkaErrorCode.CLUSTER_AUTHORIZATION_FAILED });
  assert.deepEqual(decide([{ apiKey: 'initproducerid' }], init), { verdict: 'allow' });
  // A transactional producer: refused by the role (53), allowed only where apiKey names the API.
  const tx = { ...init, transactionalId: 'tx-1' };
  assert.deepEqual(decide([{ role: 'produce' }], tx), { verdict: 'deny', code: KafkaErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED });
  assert.deepEqual(decide([{ apiKey: 'initproducerid' }], tx), { verdict: 'allow' });
  for (const apiVersion of [0, 1, 2, 5, 6]) {
    const frame = errorResponse({ ...init, apiVersion }, KafkaErrorCode.CLUSTER_AUTHORIZATION_FAILED);
    assert.ok(frame);
    const flexible = apiVersion >= 2;
    const r = new Reader(frame, 8, flexible);
    if (flexible) r.taggedFields(); // response header v1
    assert.equal(r.int32(), 0); // throttle_time_ms
    assert.equal(r.int16(), KafkaErrorCode.CLUSTER_AUTHORIZATION_FAILED);
    r.skip(8 + 2 + (apiVersion >= 6 ? 10 : 0));
    if (flexible) r.taggedFields();
    assert.equal(r.offset, frame.length, `InitProducerId v${apiVersion}`);
  }
});

test('every Kafka 4.x API key has a name rules can use; a SASL handshake v0 closes the connection', () => {
  const named = new Set(Object.values(KAFKA_API_KEYS));
  for (let key = 0; key <= 94; key++) assert.ok(named.has(key), `api key ${key}`);
  assert.equal(apiName(60), 'describecluster');
  const req = (apiKey: number, apiVersion: number) => ({ apiKey, apiVersion, correlationId: 1, clientId: 'c', readable: true, topics: null, allTopics: false, groups: [] });
  assert.deepEqual(decide([{ apiKey: 'describecluster' }], { ...req(60, 0), readable: false }), { verdict: 'allow' });
  assert.equal(decide([{ apiKey: 'saslhandshake' }], req(ApiKey.SaslHandshake, 0)).verdict, 'close');
  assert.deepEqual(decide([{ apiKey: 'saslhandshake' }], req(ApiKey.SaslHandshake, 1)), { verdict: 'allow' });
  assert.deepEqual(decide([{ role: 'produce' }], req(ApiKey.SaslHandshake, 1)), { verdict: 'deny', code: KafkaErrorCode.UNSUPPORTED_SASL_MECHANISM });
  assert.deepEqual(decide([{ role: 'produce' }], req(ApiKey.SaslAuthenticate, 2)), { verdict: 'deny', code: KafkaErrorCode.SASL_AUTHENTICATION_FAILED });
});

test('a TLS ClientHello under Kafka rules closes the connection at its first bytes, never passed through', () => {
  // Record header (handshake, TLS 1.0 record version, length 0x0200) then ClientHello: read as a Kafka size, over 100 MiB.
  const hello = Buffer.concat([Buffer.from('160301020001', 'hex'), Buffer.alloc(64, 1)]);
  const r = new KafkaConnection({ rules: () => [[{}]] }).onRead(hello);
  assert.equal(r.close, true);
  assert.equal(r.data.length, 0);
  assert.equal(r.reason, 'MESHD_KAFKA_FRAME_TOO_LARGE');
});
