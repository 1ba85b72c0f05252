import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { answerAddresses, parseAnswer, parseQuery, Rcode, rejectReply } from './message.js';

const query = (name: string, type: 'A' | 'AAAA' = 'A', id = 0x1234) => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });

/** What re-encoding a parsed query gives (the proxy's rule for what goes upstream), written out independently. */
function reencoded(b: Buffer): Buffer {
  const p = dnsPacket.decode(b);
  const q = p.questions?.[0];
  assert.ok(q);
  return dnsPacket.encode({ type: 'query', id: b.readUInt16BE(0), flags: b.readUInt16BE(2) & 0x0110, questions: [{ name: q.name, type: q.type, class: q.class ?? 'IN' }], additionals: (p.additionals ?? []).filter((a) => a.type === 'OPT') });
}

test('a query already in re-encoded form is forwarded as its own bytes; any other is encoded anew', () => {
  const opt = dnsPacket.encode({ type: 'query', id: 5, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'AAAA', name: 'Api.Example.com' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: dnsPacket.DNSSEC_OK, flag_do: true, options: [] }] });
  for (const b of [query('www.example.com'), opt]) {
    const r = parseQuery(b);
    assert.ok(r.ok);
    assert.equal(r.query.wire, b, 'the very buffer, not a copy');
    assert.deepEqual(r.query.wire, reencoded(b));
  }
  // AD set by the client: not the re-encoded form (which keeps RD and CD only), so encoded anew.
  const ad = Buffer.from(query('www.example.com'));
  ad.writeUInt16BE(ad.readUInt16BE(2) | 0x0020, 2);
  const r = parseQuery(ad);
  assert.ok(r.ok);
  assert.notEqual(r.query.wire, ad);
  assert.deepEqual(r.query.wire, reencoded(ad));
});

test('a plain query parses; the name is normalised; what goes upstream is re-encoded', () => {
  const r = parseQuery(query('API.Example.com'));
  assert.ok(r.ok);
  assert.equal(r.query.name, 'api.example.com');
  assert.equal(r.query.id, 0x1234);
  const back = dnsPacket.decode(r.query.wire);
  assert.deepEqual(back.questions, [{ name: 'API.Example.com', type: 'A', class: 'IN' }]);
  // Trailing garbage is not forwarded.
  const padded = Buffer.concat([query('a.example'), Buffer.from('garbage')]);
  const p = parseQuery(padded);
  assert.ok(p.ok);
  assert.equal(p.query.wire.length, query('a.example').length);
});

test('REFUSED and NXDOMAIN answers carry the question and the id', () => {
  const r = parseQuery(query('x.example', 'AAAA', 77));
  assert.ok(r.ok);
  for (const rcode of [Rcode.REFUSED, Rcode.NXDOMAIN]) {
    const b = rejectReply(r.query, rcode);
    const d = dnsPacket.decode(b);
    assert.equal(d.id, 77);
    assert.equal(d.type, 'response');
    assert.equal(b.readUInt16BE(2) & 0xf, rcode);
    assert.deepEqual(d.questions?.map((q) => q.name), ['x.example']);
  }
});

test('malformed, truncated, looping, oversized and multi-question input is refused with a reason', () => {
  const cases: Array<[string, Buffer]> = [];
  cases.push(['short', Buffer.from([1, 2, 3])]);
  const two = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'a.example' }, { type: 'A', name: 'b.example' }] });
  cases.push(['two questions', two]);
  const loop = Buffer.from(query('a.example'));
  // Point the question name at itself.
  loop.writeUInt16BE(0xc000 | 12, 12);
  cases.push(['compression loop', loop]);
  const truncated = query('a.long.name.example').subarray(0, 20);
  cases.push(['truncated', truncated]);
  const long = query(Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.'));
  cases.push(['name too long', long]);
  const badChars = query('a b.example');
  cases.push(['not a DNS name', badChars]);
  const response = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'a.example' }] });
  cases.push(['a response', response]);
  const update = Buffer.from(query('a.example'));
  update.writeUInt16BE((5 << 11) | 0x100, 2);
  cases.push(['UPDATE opcode', update]);
  for (const [what, b] of cases) {
    const r = parseQuery(b);
    assert.equal(r.ok, false, what);
  }
});

test('fuzz: thousands of random and mutated messages never throw, and only clean queries parse', () => {
  const seeds = [query('api.example.com'), query('a.b.c.example.org', 'AAAA'), dnsPacket.encode({ type: 'query', id: 9, questions: [{ type: 'TXT', name: 'txt.example' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] })];
  let parsed = 0;
  let asReceived = 0;
  for (let i = 0; i < 20_000; i++) {
    let b: Buffer;
    if (i % 3 === 0) b = randomBytes(Math.floor(Math.random() * 600));
    else {
      b = Buffer.from(seeds[i % seeds.length] ?? Buffer.alloc(0));
      const flips = 1 + Math.floor(Math.random() * 6);
      for (let f = 0; f < flips && b.length > 0; f++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
      if (Math.random() < 0.2) b = b.subarray(0, Math.floor(Math.random() * b.length));
    }
    const r = parseQuery(b);
    if (r.ok) {
      parsed++;
      // What would go upstream is itself a clean query with the same question, and byte for byte the
      // re-encoded message whether or not the client's own bytes were kept.
      const again = parseQuery(r.query.wire);
      assert.ok(again.ok);
      assert.equal(again.query.name, r.query.name);
      assert.deepEqual(r.query.wire, reencoded(b));
      if (r.query.wire === b) asReceived++;
    }
  }
  assert.ok(parsed > 0);
  assert.ok(asReceived > 0, 'some parsed inputs went as received');
});

test('answer addresses follow CNAME chains and take the lowest TTL', () => {
  const q = parseQuery(query('www.example.com'));
  assert.ok(q.ok);
  const ans = dnsPacket.encode({
    type: 'response',
    id: 0x1234,
    questions: [{ type: 'A', name: 'www.example.com' }],
    answers: [
      { type: 'CNAME', name: 'www.example.com', ttl: 300, data: 'edge.cdn.example' },
      { type: 'CNAME', name: 'edge.cdn.example', ttl: 60, data: 'e1.cdn.example' },
      { type: 'A', name: 'e1.cdn.example', ttl: 120, data: '192.0.2.10' },
      { type: 'A', name: 'e1.cdn.example', ttl: 30, data: '192.0.2.11' },
      { type: 'A', name: 'unrelated.example', ttl: 30, data: '192.0.2.99' },
    ],
  });
  const a = parseAnswer(ans, q.query);
  assert.ok(a.ok);
  const addrs = answerAddresses(a.packet, q.query.name);
  assert.deepEqual(addrs, { ips: ['192.0.2.10', '192.0.2.11'], names: ['www.example.com', 'edge.cdn.example', 'e1.cdn.example'], ttl: 30 });
  const other = parseAnswer(ans, { ...q.query, name: 'other.example' });
  assert.equal(other.ok, false);
});

test('an OPT record with UDP payload size 0 is forwarded as its re-encoding (the codec writes 4096), not as received', () => {
  const b = dnsPacket.encode({ type: 'query', id: 7, questions: [{ type: 'A', name: 'opt.example' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] });
  b.writeUInt16BE(0, b.length - 8); // the OPT record's class field: the payload size
  const r = parseQuery(b);
  assert.ok(r.ok);
  assert.notEqual(r.query.wire, b);
  assert.deepEqual(r.query.wire, reencoded(b));
});
