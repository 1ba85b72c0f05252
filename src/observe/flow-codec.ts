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
 * per field before it writes a byte. Here each field goes straight into one reused buffer as it is
 * read (ByteWriter), and the message is copied out once.
 *
 * Keys that are not fields of the message (proto-loader's oneof case keys) are skipped; a field
 * present in the object is written even at its default, as proto-loader's serializer writes it, so
 * both encodings decode to the same object (only the order of fields may differ). Anything
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

/** Encodes one message object with its type's plan. */
class PlanEncoder {
  private readonly plans = new WeakMap<protobuf.Type, Plan>();

  message(w: ByteWriter, t: protobuf.Type, obj: object): void {
    const plan = planOf(t, this.plans);
    for (const key in obj) {
      const p = plan.get(key);
      if (!p) continue;
      const v: unknown = Reflect.get(obj, key);
      if (p.repeated) {
        if (v === undefined || v === null) continue;
        if (!Array.isArray(v)) throw new FlowEncodeError(`${t.name}.${key}: not a list`);
        for (const item of v) this.field(w, p, item, t, key);
      } else this.field(w, p, v, t, key);
    }
  }

  private field(w: ByteWriter, p: FieldPlan, v: unknown, t: protobuf.Type, key: string): void {
    if (p.kind === 'message') {
      if (v === undefined || v === null) return;
      if (typeof v !== 'object' || !p.type) throw new FlowEncodeError(`${t.name}.${key}: not a message`);
      w.varint(p.tag);
      w.fork();
      this.message(w, p.type, v);
      w.ldelim();
      return;
    }
    if (v === undefined || v === null) return;
    switch (p.kind) {
      case 'string':
        if (typeof v !== 'string') throw new FlowEncodeError(`${t.name}.${key}: not a string`);
        w.varint(p.tag);
        w.string(v);
        return;
      case 'enum': {
        const n = typeof v === 'number' ? v : typeof v === 'string' ? p.values?.[v] : undefined;
        if (n === undefined) throw new FlowEncodeError(`${t.name}.${key}: unknown enum value ${String(v)}`);
        w.varint(p.tag);
        if (n < 0) w.varintBig(BigInt(n));
        else w.varint(n);
        return;
      }
      case 'bool':
        w.varint(p.tag);
        w.varint(v === true ? 1 : 0);
        return;
      case 'bytes':
        if (!(v instanceof Uint8Array)) throw new FlowEncodeError(`${t.name}.${key}: not bytes`);
        w.varint(p.tag);
        w.bytes(v);
        return;
      default:
        this.number(w, p, v, t, key);
    }
  }

  private number(w: ByteWriter, p: FieldPlan, v: unknown, t: protobuf.Type, key: string): void {
    const isLong = p.kind === 'varint64' || p.kind === 'sint64' || p.kind === 'fixed64' || p.kind === 'sfixed64';
    // 64-bit values come as decimal strings (proto-loader's longs: String): exact through BigInt.
    if (typeof v !== 'number' && !(isLong && typeof v === 'string' && /^-?\d+$/.test(v))) throw new FlowEncodeError(`${t.name}.${key}: not a number`);
    const n = typeof v === 'number' ? v : Number(v);
    w.varint(p.tag);
    switch (p.kind) {
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
  const enc = new PlanEncoder();
  const w = new ByteWriter();
  return (response) => {
    w.reset();
    enc.message(w, type, response);
    return w.finish();
  };
}
