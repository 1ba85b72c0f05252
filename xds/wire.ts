/**
 * Discovery responses written straight from encoded resources. A response is
 * mostly its resources, and a resource's google.protobuf.Any encoding is the
 * same in every response that carries it, on every stream and at every
 * snapshot it survives unchanged. So the Any is encoded once (the first time
 * it is sent, or by `ResourceCodec.pack`, which builds it that way) and every
 * response afterwards is one size computation and one copy per resource,
 * instead of protobufjs's fromObject + encode of the whole message.
 *
 *   const buf = encodeDiscoveryResponse({ version_info: 'v1', resources: [any], type_url, nonce: '1' });
 *
 * Field numbers are those of envoy/service/discovery/v3/discovery.proto;
 * empty strings are left out (proto3 defaults). The messages test checks the
 * result against protobufjs decoding.
 */
import type { AnyMessage } from './resource-codec.js';

/** Encoded google.protobuf.Any body (type_url = 1, value = 2), by Any object. */
const anyBodies = new WeakMap<AnyMessage, Uint8Array>();

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

class Out {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }

  bytes(tag: number, b: Uint8Array): void {
    this.buf[this.pos++] = tag;
    this.varint(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A string field; an empty string is not written. */
  string(tag: number, s: string): void {
    if (s === '') return;
    const len = Buffer.byteLength(s);
    this.buf[this.pos++] = tag;
    this.varint(len);
    this.pos += this.buf.write(s, this.pos, len, 'utf8');
  }
}

function fieldLength(len: number): number {
  return 1 + varintLength(len) + len;
}

function stringLength(s: string): number {
  return s === '' ? 0 : fieldLength(Buffer.byteLength(s));
}

/**
 * Builds an Any whose encoded body is kept: `value` is a view into it, so the
 * body costs no memory beyond the value and is never encoded again.
 */
export function makeAny(typeUrl: string, value: Uint8Array): AnyMessage {
  const body = encodeAny(typeUrl, value);
  const any: AnyMessage = { type_url: typeUrl, value: body.subarray(body.length - value.length) };
  anyBodies.set(any, body);
  return any;
}

function encodeAny(typeUrl: string, value: Uint8Array): Buffer {
  const out = new Out(Buffer.allocUnsafe(stringLength(typeUrl) + fieldLength(value.length)));
  out.string(0x0a, typeUrl);
  out.bytes(0x12, value);
  return out.buf;
}

/** The encoded body of an Any, encoded on first use and remembered for as long as the Any lives. */
export function anyBody(any: AnyMessage): Uint8Array {
  let body = anyBodies.get(any);
  if (!body) {
    body = encodeAny(any.type_url, any.value);
    anyBodies.set(any, body);
  }
  return body;
}

export interface SotwResponseFields {
  version_info: string;
  resources: readonly AnyMessage[];
  type_url: string;
  nonce: string;
}

/** envoy.service.discovery.v3.DiscoveryResponse: version_info 1, resources 2, type_url 4, nonce 5. */
export function encodeDiscoveryResponse(res: SotwResponseFields): Buffer {
  const bodies = res.resources.map(anyBody);
  let size = stringLength(res.version_info) + stringLength(res.type_url) + stringLength(res.nonce);
  for (const b of bodies) size += fieldLength(b.length);
  const out = new Out(Buffer.allocUnsafe(size));
  out.string(0x0a, res.version_info);
  for (const b of bodies) out.bytes(0x12, b);
  out.string(0x22, res.type_url);
  out.string(0x2a, res.nonce);
  return out.buf;
}

export interface DeltaResponseFields {
  system_version_info: string;
  resources: ReadonlyArray<{ name: string; version: string; resource: AnyMessage }>;
  type_url: string;
  removed_resources: readonly string[];
  nonce: string;
}

/**
 * envoy.service.discovery.v3.DeltaDiscoveryResponse: system_version_info 1,
 * resources 2 (Resource: version 1, resource 2, name 3), type_url 4, nonce 5,
 * removed_resources 6.
 */
export function encodeDeltaDiscoveryResponse(res: DeltaResponseFields): Buffer {
  const bodies = res.resources.map((r) => anyBody(r.resource));
  const inner = res.resources.map((r, i) => stringLength(r.name) + stringLength(r.version) + fieldLength(bodies[i]?.length ?? 0));
  let size = stringLength(res.system_version_info) + stringLength(res.type_url) + stringLength(res.nonce);
  for (const n of inner) size += fieldLength(n);
  for (const n of res.removed_resources) size += fieldLength(Buffer.byteLength(n));
  const out = new Out(Buffer.allocUnsafe(size));
  out.string(0x0a, res.system_version_info);
  res.resources.forEach((r, i) => {
    out.buf[out.pos++] = 0x12;
    out.varint(inner[i] ?? 0);
    out.string(0x0a, r.version);
    out.bytes(0x12, bodies[i] ?? new Uint8Array());
    out.string(0x1a, r.name);
  });
  out.string(0x22, res.type_url);
  out.string(0x2a, res.nonce);
  // a removed name is written even when empty: the list's length is its meaning
  for (const n of res.removed_resources) {
    const len = Buffer.byteLength(n);
    out.buf[out.pos++] = 0x32;
    out.varint(len);
    out.pos += out.buf.write(n, out.pos, len, 'utf8');
  }
  return out.buf;
}
