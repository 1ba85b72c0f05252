/**
 * GetFlowsResponse → protobuf bytes in one pass over the object form flow.ts types (proto-loader's:
 * enums by name, 64-bit integers as decimal strings, oneofs with their virtual case key). Field
 * numbers, wire types and enum values come from the reflection of the same protos the server loads
 * (protobufjs, the cilium module's api/v1), never from this file.
 *
 *   const encode = flowsResponseEncoder(hubbleProtoDir());
 *   encode({ response_types: 'flow', flow, node_name, time })   // Uint8Array
 *
 * Why not proto-loader's serializer: it converts the object into a protobufjs message first
 * (`fromObject`: enum names, int64 strings) and encodes that in a second pass; for a flow that was
 * most of the observer's CPU at 100,000 flows/s, and protobufjs' Writer queues an operation object
 * per field before it writes a byte. Here each message type gets an encoder function compiled from
 * its reflection (as protobufjs compiles its own), which reads the object's fields by name and
 * writes each straight into one reused buffer (ByteWriter); the message is copied out once.
 *
 * Keys that are not fields of the message (proto-loader's oneof case keys) are skipped; a field
 * present in the object is written even at its default, as proto-loader's serializer writes it, and
 * fields go out in number order as there, so a flow encodes to the same bytes (a repeated scalar is
 * written unpacked, which every decoder accepts; a flow has none). Anything
 * the plan cannot write (a map field, a value of the wrong type) throws FlowEncodeError, and the
 * caller falls back to proto-loader's serializer.
 */
import protobuf from 'protobufjs';
import { existsSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { MeshdError } from '../util/errors.js';

export class FlowEncodeError extends MeshdError {
  constructor(message: string) {
    super('MESHD_OBSERVE_ENCODE', message, { kind: 'failed' });
  }
}

type Kind = 'varint32' | 'sint32' | 'bool' | 'enum' | 'varint64' | 'sint64' | 'fixed32' | 'sfixed32' | 'fixed64' | 'sfixed64' | 'float' | 'double' | 'string' | 'bytes' | 'message';

interface FieldPlan {
  tag: number;
  kind: Kind;
  repeated: boolean;
  /** Enum values by name (kind enum). */
  values?: Readonly<Record<string, number>>;
  /** The nested message's plan (kind message), resolved on first use. */
  type?: protobuf.Type;
}

type Plan = Map<string, FieldPlan>;

const WIRE: Record<Kind, number> = {
  varint32: 0, sint32: 0, bool: 0, enum: 0, varint64: 0, sint64: 0,
  fixed32: 5, sfixed32: 5, float: 5,
  fixed64: 1, sfixed64: 1, double: 1,
  string: 2, bytes: 2, message: 2,
};

const SCALAR: Record<string, Kind> = {
  int32: 'varint32', uint32: 'varint32', sint32: 'sint32', bool: 'bool',
  int64: 'varint64', uint64: 'varint64', sint64: 'sint64',
  fixed32: 'fixed32', sfixed32: 'sfixed32', fixed64: 'fixed64', sfixed64: 'sfixed64',
  float: 'float', double: 'double', string: 'string', bytes: 'bytes',
};

function planOf(t: protobuf.Type, plans: WeakMap<protobuf.Type, Plan>): Plan {
  const cached = plans.get(t);
  if (cached) return cached;
  const plan: Plan = new Map();
  for (const f of t.fieldsArray) {
    if (f.map) continue; // not written: a flow has no map fields; a value there makes the encoder throw
    f.resolve();
    const rt = f.resolvedType;
    let p: FieldPlan;
    if (rt instanceof protobuf.Enum) p = { tag: 0, kind: 'enum', repeated: f.repeated, values: rt.values };
    else if (rt instanceof protobuf.Type) p = { tag: 0, kind: 'message', repeated: f.repeated, type: rt };
    else {
      const kind = SCALAR[f.type];
      if (!kind) continue;
      p = { tag: 0, kind, repeated: f.repeated };
    }
    p.tag = ((f.id << 3) | WIRE[p.kind]) >>> 0;
    plan.set(f.name, p);
  }
  plans.set(t, plan);
  return plan;
}


/**
 * Protobuf's wire primitives into one growing, reused buffer. A nested message reserves one byte
 * for its length and moves its body only in the rare case the length needs more than one byte.
 */
class ByteWriter {
  private buf = Buffer.allocUnsafe(4096);
  private pos = 0;
  private readonly starts: number[] = [];

  reset(): void {
    this.pos = 0;
    this.starts.length = 0;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** A non-negative integer below 2^53. */
  varint(v: number): void {
    this.ensure(10);
    const b = this.buf;
    let p = this.pos;
    while (v >= 0x80) {
      b[p++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    b[p++] = v;
    this.pos = p;
  }

  /** Any 64-bit integer (two's complement for negatives, as int64 is on the wire). */
  varintBig(v: bigint): void {
    let u = BigInt.asUintN(64, v);
    this.ensure(10);
    while (u >= 0x80n) {
      this.buf[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }

  string(s: string): void {
    const n = s.length;
    // ASCII (nearly every flow string) byte by byte; anything else through Buffer's UTF-8 encoder.
    this.ensure(n + 5);
    let ascii = n < 0x80;
    for (let i = 0; ascii && i < n; i += 1) if (s.charCodeAt(i) >= 0x80) ascii = false;
    if (ascii) {
      const b = this.buf;
      let p = this.pos;
      b[p++] = n;
      for (let i = 0; i < n; i += 1) b[p++] = s.charCodeAt(i);
      this.pos = p;
      return;
    }
    const len = Buffer.byteLength(s, 'utf8');
    this.varint(len);
    this.ensure(len);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  bytes(v: Uint8Array): void {
    this.varint(v.byteLength);
    this.ensure(v.byteLength);
    this.buf.set(v, this.pos);
    this.pos += v.byteLength;
  }

  fixed(v: number | bigint, size: 4 | 8, kind: 'u' | 's' | 'f'): void {
    this.ensure(size);
    if (size === 4) {
      if (kind === 'f') this.buf.writeFloatLE(Number(v), this.pos);
      else if (kind === 's') this.buf.writeInt32LE(Number(v), this.pos);
      else this.buf.writeUInt32LE(Number(v), this.pos);
    } else if (kind === 'f') this.buf.writeDoubleLE(Number(v), this.pos);
    else this.buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), this.pos);
    this.pos += size;
  }

  fork(): void {
    this.ensure(1);
    this.starts.push(this.pos);
    this.pos += 1;
  }

  ldelim(): void {
    const start = this.starts.pop() ?? 0;
    const len = this.pos - start - 1;
    if (len < 0x80) {
      this.buf[start] = len;
      return;
    }
    let extra = 0;
    for (let v = len; v >= 0x80; v = Math.floor(v / 0x80)) extra += 1;
    this.ensure(extra);
    this.buf.copyWithin(start + 1 + extra, start + 1, this.pos);
    const end = this.pos + extra;
    this.pos = start;
    this.varint(len);
    this.pos = end;
  }

  finish(): Buffer {
    // allocUnsafe takes small buffers from Node's shared pool: no allocation per message.
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    return out;
  }
}

/** Where a value sits, for FlowEncodeError: "Flow.verdict". */
type Where = string;

/**
 * The per-kind writers the compiled encoders call: each checks the value's type (a wrong one is
 * FlowEncodeError) and writes tag and value.
 */
const WRITE = {
  string(w: ByteWriter, tag: number, v: unknown, at: Where): void {
    if (typeof v !== 'string') throw new FlowEncodeError(`${at}: not a string`);
    w.varint(tag);
    w.string(v);
  },
  enum(w: ByteWriter, tag: number, v: unknown, at: Where, values: Readonly<Record<string, number>>): void {
    const n = typeof v === 'number' ? v : typeof v === 'string' ? values[v] : undefined;
    if (n === undefined) throw new FlowEncodeError(`${at}: unknown enum value ${String(v)}`);
    w.varint(tag);
    if (n < 0) w.varintBig(BigInt(n));
    else w.varint(n);
  },
  bool(w: ByteWriter, tag: number, v: unknown): void {
    w.varint(tag);
    w.varint(v === true ? 1 : 0);
  },
  bytes(w: ByteWriter, tag: number, v: unknown, at: Where): void {
    if (!(v instanceof Uint8Array)) throw new FlowEncodeError(`${at}: not bytes`);
    w.varint(tag);
    w.bytes(v);
  },
  number(w: ByteWriter, tag: number, v: unknown, at: Where, kind: Kind): void {
    const isLong = kind === 'varint64' || kind === 'sint64' || kind === 'fixed64' || kind === 'sfixed64';
    // 64-bit values come as decimal strings (proto-loader's longs: String): exact through BigInt.
    if (typeof v !== 'number' && !(isLong && typeof v === 'string' && /^-?\d+$/.test(v))) throw new FlowEncodeError(`${at}: not a number`);
    const n = typeof v === 'number' ? v : Number(v);
    w.varint(tag);
    switch (kind) {
      case 'varint32':
      case 'varint64':
        if (n >= 0 && Number.isSafeInteger(n)) w.varint(n);
        else w.varintBig(BigInt(typeof v === 'string' ? v : Math.trunc(n)));
        return;
      case 'sint32':
      case 'sint64': {
        const b = BigInt(typeof v === 'string' ? v : Math.trunc(n));
        w.varintBig(b >= 0n ? b << 1n : (-b << 1n) - 1n);
        return;
      }
      case 'fixed32':
        w.fixed(n, 4, 'u');
        return;
      case 'sfixed32':
        w.fixed(n, 4, 's');
        return;
      case 'float':
        w.fixed(n, 4, 'f');
        return;
      case 'double':
        w.fixed(n, 8, 'f');
        return;
      default:
        // fixed64, sfixed64
        w.fixed(typeof v === 'string' ? BigInt(v) : BigInt(Math.trunc(n)), 8, 'u');
        return;
    }
  },
};

type MessageEncoder = (w: ByteWriter, obj: object) => void;

/**
 * A type's compiled function behind a slot that compiles it on the first call and then holds it:
 * registered before compiling, so a message type that contains itself (directly or not) refers to
 * its own slot. Compiled code calls `slot.fn(…)`: no wrapper in between once compiled.
 */
interface Slot<F> {
  fn: F;
}

function slotOf<F>(cache: Map<protobuf.Type, Slot<F>>, t: protobuf.Type, first: (self: () => Slot<F>) => F): Slot<F> {
  const done = cache.get(t);
  if (done) return done;
  const slot: Slot<F> = { fn: first(() => slot) };
  cache.set(t, slot);
  return slot;
}

/**
 * One function per message type, compiled from its plan: it reads each field by name (a property
 * access V8 caches per field, where reading the object's keys and looking each up in the plan cost
 * several times the writing) in field order and hands present values to WRITE. A nested message's
 * encoder is compiled on first use. Fields the object does not have are skipped, so a message
 * encodes to the same bytes as proto-loader's serializer, which also writes fields in number order.
 */
class CompiledEncoder {
  private readonly plans = new WeakMap<protobuf.Type, Plan>();
  private readonly compiled = new Map<protobuf.Type, Slot<MessageEncoder>>();

  of(t: protobuf.Type): Slot<MessageEncoder> {
    return slotOf(this.compiled, t, (self) => (w, o) => {
      const fn = (self().fn = this.compile(t));
      fn(w, o);
    });
  }

  private compile(t: protobuf.Type): MessageEncoder {
    const plan = [...planOf(t, this.plans)].sort((a, b) => a[1].tag - b[1].tag);
    const consts: unknown[] = [];
    const ref = (v: unknown) => `c[${consts.push(v) - 1}]`;
    const lines: string[] = ['let v;'];
    for (const [key, p] of plan) {
      const at = JSON.stringify(`${t.name}.${key}`);
      let write: string;
      switch (p.kind) {
        case 'message': {
          if (!p.type) continue;
          const sub = ref(this.of(p.type));
          write = `if (typeof x !== 'object') throw new E(${at} + ': not a message'); w.varint(${p.tag}); w.fork(); ${sub}.fn(w, x); w.ldelim();`;
          break;
        }
        case 'string':
          write = `W.string(w, ${p.tag}, x, ${at});`;
          break;
        case 'enum':
          write = `W.enum(w, ${p.tag}, x, ${at}, ${ref(p.values ?? {})});`;
          break;
        case 'bool':
          write = `W.bool(w, ${p.tag}, x);`;
          break;
        case 'bytes':
          write = `W.bytes(w, ${p.tag}, x, ${at});`;
          break;
        default:
          write = `W.number(w, ${p.tag}, x, ${at}, ${JSON.stringify(p.kind)});`;
      }
      lines.push(`v = o[${JSON.stringify(key)}];`);
      lines.push(
        p.repeated
          ? `if (v != null) { if (!Array.isArray(v)) throw new E(${at} + ': not a list'); for (const x of v) { if (x == null) continue; ${write} } }`
          : `if (v != null) { const x = v; ${write} }`,
      );
    }
    // Generated from the protos' reflection only (field names, numbers and kinds), as protobufjs does.
    const make = new Function('W', 'E', 'c', `return function encode_${t.name}(w, o) {\n${lines.join('\n')}\n};`) as (w: typeof WRITE, e: typeof FlowEncodeError, c: unknown[]) => MessageEncoder;
    return make(WRITE, FlowEncodeError, consts);
  }
}

/** protobufjs' Root with the include directory resolution proto-loader uses (includeDirs). */
function loadRoot(dir: string): protobuf.Root {
  const root = new protobuf.Root();
  const original = root.resolvePath.bind(root);
  root.resolvePath = (origin, target) => {
    if (isAbsolute(target)) return target;
    const inDir = join(dir, target);
    return existsSync(inDir) ? inDir : original(origin, target);
  };
  root.loadSync(join(dir, 'observer', 'observer.proto'), { keepCase: true });
  root.resolveAll();
  return root;
}

/** The encoder of observer.GetFlowsResponse for the protos in `dir` (the cilium module's api/v1). */
export function flowsResponseEncoder(dir: string): (response: object) => Buffer {
  const type = loadRoot(dir).lookupType('observer.GetFlowsResponse');
  const encodeResponse = new CompiledEncoder().of(type);
  const w = new ByteWriter();
  return (response) => {
    w.reset();
    encodeResponse.fn(w, response);
    return w.finish();
  };
}

export class FlowDecodeError extends MeshdError {
  constructor(message: string) {
    super('MESHD_OBSERVE_DECODE', message, { kind: 'failed' });
  }
}

/**
 * Protobuf's wire primitives over one message's bytes. 64-bit integers come out as decimal strings
 * (proto-loader's longs: String), exact: through a plain number below 2^53, else BigInt.
 */
class ByteReader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  /** A varint as a number; exact below 2^53 (every length, tag, 32-bit and enum value). */
  varint(): number {
    const b = this.buf;
    let p = this.pos;
    let v = 0;
    let mul = 1;
    for (;;) {
      if (p >= b.length) throw new FlowDecodeError('truncated varint');
      const c = b[p++] ?? 0;
      v += (c & 0x7f) * mul;
      if (c < 0x80) break;
      mul *= 0x80;
      if (mul > 2 ** 63) throw new FlowDecodeError('varint longer than 10 bytes');
    }
    this.pos = p;
    return v;
  }

  /** A varint's 64 bits, exact. */
  varintBig(): bigint {
    const b = this.buf;
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= b.length) throw new FlowDecodeError('truncated varint');
      const c = b[this.pos++] ?? 0;
      v |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) return BigInt.asUintN(64, v);
      shift += 7n;
      if (shift > 63n) throw new FlowDecodeError('varint longer than 10 bytes');
    }
  }

  /** int64 / uint64 as proto-loader's decimal string. */
  long(signed: boolean): string {
    const start = this.pos;
    const n = this.varint();
    if (n < 2 ** 53) return String(n);
    this.pos = start;
    const v = this.varintBig();
    return String(signed ? BigInt.asIntN(64, v) : v);
  }

  sint64(): string {
    const v = this.varintBig();
    return String((v >> 1n) ^ -(v & 1n));
  }

  int32(): number {
    const start = this.pos;
    const n = this.varint();
    if (n < 2 ** 31) return n;
    // A negative int32 is a ten-byte varint: its low 32 bits, signed.
    this.pos = start;
    return Number(BigInt.asIntN(32, this.varintBig()));
  }

  end(n: number): number {
    const e = this.pos + n;
    if (e > this.buf.length) throw new FlowDecodeError('length beyond the message');
    return e;
  }

  string(): string {
    const n = this.varint();
    const e = this.end(n);
    const b = this.buf;
    let s: string;
    if (n <= 32) {
      // Short ASCII (nearly every flow string) without the UTF-8 decoder's call overhead.
      s = '';
      for (let p = this.pos; p < e; p += 1) {
        const c = b[p] ?? 0;
        if (c >= 0x80) {
          s = b.toString('utf8', this.pos, e);
          break;
        }
        s += String.fromCharCode(c);
      }
    } else s = b.toString('utf8', this.pos, e);
    this.pos = e;
    return s;
  }

  bytes(): Buffer {
    const n = this.varint();
    const e = this.end(n);
    const out = this.buf.subarray(this.pos, e);
    this.pos = e;
    return out;
  }

  fixed(size: 4 | 8, kind: 'u' | 's' | 'f'): number | string {
    if (this.pos + size > this.buf.length) throw new FlowDecodeError('truncated fixed-size value');
    const b = this.buf;
    const p = this.pos;
    this.pos += size;
    if (size === 4) return kind === 'f' ? b.readFloatLE(p) : kind === 's' ? b.readInt32LE(p) : b.readUInt32LE(p);
    if (kind === 'f') return b.readDoubleLE(p);
    return String(kind === 's' ? b.readBigInt64LE(p) : b.readBigUInt64LE(p));
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos = this.end(8);
    else if (wire === 2) this.pos = this.end(this.varint());
    else if (wire === 5) this.pos = this.end(4);
    else throw new FlowDecodeError(`wire type ${wire} (groups) not supported`);
  }
}

type MessageDecoder = (r: ByteReader, end: number) => Record<string, unknown>;

/** The reader call that reads one scalar value of a kind (messages and enums are read per field). */
const READ: Record<Kind, string> = {
  message: '',
  enum: '',
  varint32: '', // set per field: uint32 and int32 differ
  sint32: '((n) => (n >>> 1) ^ -(n & 1))(r.varint())',
  bool: 'r.varint() !== 0',
  varint64: '',
  sint64: 'r.sint64()',
  fixed32: "r.fixed(4, 'u')",
  sfixed32: "r.fixed(4, 's')",
  float: "r.fixed(4, 'f')",
  fixed64: "r.fixed(8, 'u')",
  sfixed64: "r.fixed(8, 's')",
  double: "r.fixed(8, 'f')",
  string: 'r.string()',
  bytes: 'r.bytes()',
};

/**
 * One decoder function per message type, compiled from its reflection like CompiledEncoder: the
 * wire → proto-loader's object form (keepCase, enums and 64-bit integers as strings, only fields
 * that were on the wire, a oneof's case key beside its member) in one pass, where proto-loader
 * decodes into a protobufjs message and converts that with toObject. Keys are set in field number
 * order, as toObject sets them. A map or group field is FlowDecodeError (a flow has none).
 */
class CompiledDecoder {
  private readonly compiled = new Map<protobuf.Type, Slot<MessageDecoder>>();

  of(t: protobuf.Type): Slot<MessageDecoder> {
    return slotOf(this.compiled, t, (self) => (r, end) => (self().fn = this.compile(t))(r, end));
  }

  private compile(t: protobuf.Type): MessageDecoder {
    const consts: unknown[] = [];
    const ref = (v: unknown) => `c[${consts.push(v) - 1}]`;
    const fields = [...t.fieldsArray].sort((a, b) => a.id - b.id);
    const cases: string[] = [];
    const build: string[] = [];
    fields.forEach((f, i) => {
      const at = JSON.stringify(`${t.name}.${f.name}`);
      f.resolve();
      const slot = `f${i}`;
      const rt = f.resolvedType;
      let read: string;
      let wire: number;
      if (f.map) {
        cases.push(`case ${f.id}: throw new E(${at} + ': map fields are not decoded here');`);
        return;
      }
      if (rt instanceof protobuf.Type) {
        read = `${ref(this.of(rt))}.fn(r, r.end(r.varint()))`;
        wire = 2;
      } else if (rt instanceof protobuf.Enum) {
        read = `((n) => ${ref(rt.valuesById)}[n] ?? n)(r.int32())`;
        wire = 0;
      } else {
        const kind = SCALAR[f.type];
        if (!kind) throw new FlowDecodeError(`${t.name}.${f.name}: type ${f.type} not supported`);
        read = kind === 'varint32' ? (f.type === 'int32' ? 'r.int32()' : 'r.varint() >>> 0') : kind === 'varint64' ? `r.long(${f.type === 'int64'})` : READ[kind];
        wire = WIRE[kind];
      }
      if (f.repeated) {
        const packed = wire !== 2 ? ` else if (w === 2) { const e = r.end(r.varint()); while (r.pos < e) ${slot}.push(${read}); }` : '';
        cases.push(`case ${f.id}: ${slot} ??= []; if (w === ${wire}) ${slot}.push(${read});${packed} else throw new E(${at} + ': wire type ' + w); break;`);
      } else cases.push(`case ${f.id}: if (w !== ${wire}) throw new E(${at} + ': wire type ' + w); ${slot} = ${read}; break;`);
      const oneof = f.partOf ? ` d[${JSON.stringify(f.partOf.name)}] = ${JSON.stringify(f.name)};` : '';
      build.push(`if (${slot} !== undefined) { d[${JSON.stringify(f.name)}] = ${slot};${oneof} }`);
    });
    const slots = fields.map((_, i) => `f${i}`).join(', ');
    const body = [
      `let ${slots};`,
      'while (r.pos < end) {',
      '  const tag = r.varint(); const w = tag & 7;',
      `  switch (Math.floor(tag / 8)) { ${cases.join('\n')}\n default: r.skip(w); }`,
      '}',
      `if (r.pos !== end) throw new E(${JSON.stringify(t.name)} + ': a field runs past the message');`,
      'const d = {};',
      ...build,
      'return d;',
    ];
    // Generated from the protos' reflection only (field names, numbers and kinds), as protobufjs does.
    const make = new Function('E', 'c', `return function decode_${t.name}(r, end) {\n${body.join('\n')}\n};`) as (e: typeof FlowDecodeError, c: unknown[]) => MessageDecoder;
    return make(FlowDecodeError, consts);
  }
}

/**
 * The decoder of observer.GetFlowsResponse for the protos in `dir`, into the object form
 * proto-loader's deserializer gives (HUBBLE_LOADER_OPTIONS). Bytes it cannot read throw
 * FlowDecodeError, and the caller falls back to proto-loader's deserializer.
 */
export function flowsResponseDecoder(dir: string): (bytes: Buffer) => Record<string, unknown> {
  const decode = new CompiledDecoder().of(loadRoot(dir).lookupType('observer.GetFlowsResponse'));
  return (bytes) => {
    const r = new ByteReader(bytes);
    return decode.fn(r, bytes.length);
  };
}
