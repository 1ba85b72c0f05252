/**
 * DNS messages at the proxy's boundary, over the dns-packet codec. A query is
 * accepted only when it decodes whole (the codec refuses forward or looping
 * compression pointers and names over 254 bytes), is a standard QUERY with
 * exactly one question whose name is a DNS name (letters, digits, `-`, `_`),
 * and fits the limits; everything else is answered by the proxy itself
 * (FORMERR when there is a header to answer, nothing otherwise) and never
 * reaches the upstream. What goes upstream is the message as re-encoded from
 * what was parsed: a query already in that form (the common one: a header
 * with no flag but RD/CD, one uncompressed question, at most an OPT record,
 * nothing after it) is forwarded as the bytes it arrived in, which are those
 * very bytes (message.test.ts checks it on every parsed fuzz input);
 * any other is encoded anew.
 *
 *   const q = parseQuery(buf);
 *   if (!q.ok) return q.reply ? send(q.reply) : undefined;
 *   const wire = q.query.wire;                       // re-encoded, id as the client sent it
 *   const a = parseAnswer(upstreamBytes, q.query);   // validated: id, question
 *   answerAddresses(a.packet, q.query.name);         // { ips, names, ttl } through CNAME chains
 */
import * as dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, Question, StringAnswer } from 'dns-packet';
import { isIP } from 'node:net';
import { normaliseDnsName } from '../policy/l7-match.js';

/** RFC 1035 §4.1.1 response codes the proxy sends itself. */
export const Rcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type RcodeNumber = (typeof Rcode)[keyof typeof Rcode];

/** Larger messages are not DNS over UDP; TCP frames carry at most 65535 bytes. */
export const MAX_MESSAGE = 65535;
const HEADER = 12;
const LABEL = /^[-a-zA-Z0-9_]{1,63}$/;
/** Flag bits a query keeps upstream: RD and CD; the rest of a query's flags mean nothing there. */
const QUERY_FLAGS = 0x0110;

export interface DnsQuery {
  id: number;
  /** As asked (case kept), without the trailing dot; "." for the root. */
  qname: string;
  /** Lowercase, no trailing dot: what rules match. */
  name: string;
  qtype: string;
  question: Question;
  recursionDesired: boolean;
  /** The message re-encoded from what was parsed (id as the client sent it); the client's buffer when that is the same bytes. */
  wire: Buffer;
}

export type QueryParse =
  | { ok: true; query: DnsQuery }
  | { ok: false; reason: string; /** FORMERR/NOTIMP to send back, when the header could be read. */ reply: Buffer | null };

function header(buf: Buffer): { id: number; flags: number; qd: number } | null {
  if (buf.length < HEADER) return null;
  return { id: buf.readUInt16BE(0), flags: buf.readUInt16BE(2), qd: buf.readUInt16BE(4) };
}

/** A bare reply with no question (for queries whose question cannot be trusted). */
function bareReply(id: number, flags: number, rcode: RcodeNumber): Buffer {
  const b = Buffer.alloc(HEADER);
  b.writeUInt16BE(id, 0);
  // QR, opcode kept, RD kept, rcode.
  b.writeUInt16BE(0x8000 | (flags & 0x7800) | (flags & 0x0100) | rcode, 2);
  return b;
}

export function parseQuery(buf: Buffer): QueryParse {
  const h = header(buf);
  if (!h) return { ok: false, reason: 'shorter than a DNS header', reply: null };
  if (h.flags & 0x8000) return { ok: false, reason: 'a response, not a query', reply: null };
  if (buf.length > MAX_MESSAGE) return { ok: false, reason: 'oversized', reply: bareReply(h.id, h.flags, Rcode.FORMERR) };
  const opcode = (h.flags >> 11) & 0xf;
  if (opcode !== 0) return { ok: false, reason: `opcode ${opcode}`, reply: bareReply(h.id, h.flags, Rcode.NOTIMP) };
  if (h.qd !== 1) return { ok: false, reason: `${h.qd} questions`, reply: bareReply(h.id, h.flags, Rcode.FORMERR) };
  let p: DecodedPacket;
  try {
    p = dnsPacket.decode(buf);
  } catch (e) {
    return { ok: false, reason: `malformed: ${e instanceof Error ? e.message : String(e)}`, reply: bareReply(h.id, h.flags, Rcode.FORMERR) };
  }
  const q = p.questions?.[0];
  if (!q || (p.answers?.length ?? 0) > 0 || (p.authorities?.length ?? 0) > 0) return { ok: false, reason: 'not a plain query', reply: bareReply(h.id, h.flags, Rcode.FORMERR) };
  const labels = q.name === '.' || q.name === '' ? [] : q.name.split('.');
  if (!labels.every((l) => LABEL.test(l))) return { ok: false, reason: 'name is not a DNS name', reply: bareReply(h.id, h.flags, Rcode.FORMERR) };
  const qname = labels.length === 0 ? '.' : labels.join('.');
  let wire: Buffer;
  try {
    wire = inCanonicalForm(buf, h.flags, p, labels.length) ? buf : dnsPacket.encode({
      type: 'query',
      id: h.id,
      flags: h.flags & QUERY_FLAGS,
      questions: [{ name: qname, type: q.type, class: q.class ?? 'IN' }],
      additionals: (p.additionals ?? []).filter((a) => a.type === 'OPT'),
    });
  } catch (e) {
    return { ok: false, reason: `cannot re-encode: ${e instanceof Error ? e.message : String(e)}`, reply: bareReply(h.id, h.flags, Rcode.FORMERR) };
  }
  return {
    ok: true,
    query: { id: h.id, qname, name: normaliseDnsName(qname), qtype: String(q.type), question: { name: qname, type: q.type, class: q.class ?? 'IN' }, recursionDesired: (h.flags & 0x0100) !== 0, wire },
  };
}

/**
 * Whether a decoded query's bytes are exactly what re-encoding it gives: nothing after what the codec
 * read, no flag beyond RD/CD, class IN and a type the codec knows, no additional record but OPT (with a
 * UDP payload size), and a
 * question name written out label by label, each label one of the name's (the encoder compresses
 * nothing in the first name) — the case of every resolver library's query.
 */
function inCanonicalForm(buf: Buffer, flags: number, p: DecodedPacket, labels: number): boolean {
  if (dnsPacket.decode.bytes !== buf.length || (flags & ~QUERY_FLAGS & 0xffff) !== 0) return false;
  // The codec encodes a class or type it does not know as 0.
  const q = p.questions?.[0];
  if (q?.class !== 'IN' || q.type.startsWith('UNKNOWN')) return false;
  // The codec writes an OPT record's UDP payload size 0 as 4096.
  if (!(p.additionals ?? []).every((a) => a.type === 'OPT' && a.udpPayloadSize !== 0)) return false;
  // As many labels on the wire as in the name: a label holding a "." (which the codec reads into the
  // name unescaped) would be forwarded as one label but is judged, and re-encoded, as two.
  let at = HEADER;
  let n = 0;
  for (let len = buf[at] ?? 0; len !== 0; len = buf[at] ?? 0, n++) {
    if (len & 0xc0) return false;
    at += len + 1;
  }
  return n === labels;
}

/** The proxy's own answer to a query: no records, the given code (REFUSED / NXDOMAIN for a denied name). */
export function rejectReply(q: DnsQuery, rcode: RcodeNumber): Buffer {
  return dnsPacket.encode({ type: 'response', id: q.id, flags: (q.recursionDesired ? dnsPacket.RECURSION_DESIRED : 0) | rcode, questions: [q.question] });
}

/** The id of a message, replaced (upstream legs use their own ids). */
export function withId(buf: Buffer, id: number): Buffer {
  const b = Buffer.from(buf);
  b.writeUInt16BE(id, 0);
  return b;
}

export type AnswerParse = { ok: true; packet: DecodedPacket; rcode: number } | { ok: false; reason: string };

/** An upstream's answer to `q` (already given back the client's id): a response to that very question. */
export function parseAnswer(buf: Buffer, q: DnsQuery): AnswerParse {
  if (buf.length < HEADER || buf.length > MAX_MESSAGE) return { ok: false, reason: 'bad length' };
  let p: DecodedPacket;
  try {
    p = dnsPacket.decode(buf);
  } catch (e) {
    return { ok: false, reason: `malformed: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (p.type !== 'response' || p.id !== q.id) return { ok: false, reason: 'not the response to this query' };
  const aq = p.questions?.[0];
  if ((p.questions?.length ?? 0) !== 1 || !aq || normaliseDnsName(aq.name) !== q.name || aq.type !== q.question.type) return { ok: false, reason: 'answers another question' };
  return { ok: true, packet: p, rcode: buf.readUInt16BE(2) & 0xf };
}

export interface AnswerAddresses {
  /** A and AAAA addresses at the end of the CNAME chain of the question's name. */
  ips: string[];
  /** The question's name and every CNAME target on the chain (normalised). */
  names: string[];
  /** The lowest TTL along the chain and the addresses (seconds). */
  ttl: number;
}

/** Addresses an answer gives for `qname`, following CNAMEs in the answer section (at most 16 hops, no loops). */
export function answerAddresses(p: DecodedPacket, qname: string): AnswerAddresses {
  const answers: Answer[] = p.answers ?? [];
  const chain = [normaliseDnsName(qname)];
  let ttl = Number.POSITIVE_INFINITY;
  for (let hop = 0; hop < 16; hop++) {
    const at = chain[chain.length - 1] ?? '';
    const c = answers.find((a): a is StringAnswer => a.type === 'CNAME' && normaliseDnsName(a.name) === at);
    if (!c || typeof c.data !== 'string') break;
    const next = normaliseDnsName(c.data);
    if (chain.includes(next)) break;
    chain.push(next);
    ttl = Math.min(ttl, c.ttl ?? 0);
  }
  const names = new Set(chain);
  const ips: string[] = [];
  for (const a of answers) {
    if (a.type !== 'A' && a.type !== 'AAAA') continue;
    if (!names.has(normaliseDnsName(a.name)) || typeof a.data !== 'string' || isIP(a.data) === 0) continue;
    if (!ips.includes(a.data)) ips.push(a.data);
    ttl = Math.min(ttl, a.ttl ?? 0);
  }
  return { ips, names: chain, ttl: ips.length === 0 || !Number.isFinite(ttl) ? 0 : ttl };
}
