/**
 * Binary codecs for structs shared with the BPF programs.
 *
 * Each struct that crosses the C/TypeScript boundary is declared once in C
 * (bpf/include/*.h) and mirrored here as a `StructCodec`. Offsets follow the C
 * ABI's natural alignment, and a test compares every codec's size and field
 * offsets with the BTF of the compiled object (test/helpers/btf.ts), so a
 * change on one side that is not made on the other fails the build's tests.
 *
 *   const Stats = defineStruct('meshd_probe_stats', [
 *     ['runs', 'u64'], ['last_len', 'u32'], ['magic', 'u32'],
 *   ]);
 *   Stats.decode(buf).runs;    // bigint
 *   Stats.encode({ runs: 1n, last_len: 60, magic: 0 });
 */
import { MeshdError } from '../util/errors.js';

/** A value or buffer that does not fit a struct: `field` names the struct and member (`v.n`). */
export class CodecError extends MeshdError {
  constructor(
    code: 'MESHD_CODEC_VALUE_INVALID' | 'MESHD_CODEC_BUFFER_SHORT',
    readonly field: string,
    message: string,
  ) {
    super(code, `${field}: ${message}`, { kind: 'invalid' });
  }
}

export type FieldType =
  | 'u8'
  | 'u16'
  | 'u32'
  | 'u64'
  | 'i32'
  | 'be16' // __be16: network byte order (ports)
  | 'be32' // __be32: network byte order (IPv4 addresses as numbers)
  | { bytes: number; align?: number }; // fixed byte array (IPv6 address, padding, union)

type FieldValue<T extends FieldType> = T extends 'u64' ? bigint : T extends { bytes: number } ? Buffer : number;

export type FieldSpec = readonly [name: string, type: FieldType];

export type StructValue<F extends readonly FieldSpec[]> = {
  [K in F[number] as K[0]]: FieldValue<K[1]>;
};

export interface FieldLayout {
  name: string;
  type: FieldType;
  offset: number;
  size: number;
}

export interface StructCodec<F extends readonly FieldSpec[]> {
  /** The C struct's tag (without `struct`), as BTF names it. */
  readonly cName: string;
  readonly size: number;
  readonly fields: readonly FieldLayout[];
  encode(value: StructValue<F>, into?: Buffer, at?: number): Buffer;
  decode(buf: Buffer, at?: number): StructValue<F>;
  /** All-zero value. */
  zero(): StructValue<F>;
}

function sizeOf(t: FieldType): number {
  if (typeof t === 'object') return t.bytes;
  switch (t) {
    case 'u8':
      return 1;
    case 'u16':
    case 'be16':
      return 2;
    case 'u32':
    case 'i32':
    case 'be32':
      return 4;
    case 'u64':
      return 8;
  }
}

function alignOf(t: FieldType): number {
  if (typeof t === 'object') return t.align ?? 1;
  return sizeOf(t);
}

export function defineStruct<const F extends readonly FieldSpec[]>(cName: string, specs: F): StructCodec<F> {
  let offset = 0;
  let maxAlign = 1;
  const fields: FieldLayout[] = [];
  for (const [name, type] of specs) {
    const a = alignOf(type);
    maxAlign = Math.max(maxAlign, a);
    offset = Math.ceil(offset / a) * a;
    const size = sizeOf(type);
    fields.push({ name, type, offset, size });
    offset += size;
  }
  const total = Math.ceil(offset / maxAlign) * maxAlign;

  const encode = (value: StructValue<F>, into?: Buffer, at = 0): Buffer => {
    const buf = into ?? Buffer.alloc(total);
    if (into) buf.fill(0, at, at + total);
    const rec = value as Record<string, unknown>;
    for (const f of fields) {
      const v = rec[f.name];
      const o = at + f.offset;
      if (typeof f.type === 'object') {
        if (!Buffer.isBuffer(v) || v.length !== f.type.bytes) {
          throw new CodecError('MESHD_CODEC_VALUE_INVALID', `${cName}.${f.name}`, `expected a Buffer of ${f.type.bytes} bytes`);
        }
        v.copy(buf, o);
        continue;
      }
      if (f.type === 'u64') {
        if (typeof v !== 'bigint') throw new CodecError('MESHD_CODEC_VALUE_INVALID', `${cName}.${f.name}`, 'expected a bigint');
        buf.writeBigUInt64LE(v, o);
        continue;
      }
      if (typeof v !== 'number' || !Number.isInteger(v)) throw new CodecError('MESHD_CODEC_VALUE_INVALID', `${cName}.${f.name}`, 'expected an integer');
      switch (f.type) {
        case 'u8':
          buf.writeUInt8(v, o);
          break;
        case 'u16':
          buf.writeUInt16LE(v, o);
          break;
        case 'u32':
          buf.writeUInt32LE(v, o);
          break;
        case 'i32':
          buf.writeInt32LE(v, o);
          break;
        case 'be16':
          buf.writeUInt16BE(v, o);
          break;
        case 'be32':
          buf.writeUInt32BE(v, o);
          break;
      }
    }
    return buf;
  };

  const decode = (buf: Buffer, at = 0): StructValue<F> => {
    if (buf.length - at < total) throw new CodecError('MESHD_CODEC_BUFFER_SHORT', cName, `need ${total} bytes, got ${buf.length - at}`);
    const out: Record<string, unknown> = {};
    for (const f of fields) {
      const o = at + f.offset;
      if (typeof f.type === 'object') {
        out[f.name] = Buffer.from(buf.subarray(o, o + f.type.bytes));
        continue;
      }
      switch (f.type) {
        case 'u8':
          out[f.name] = buf.readUInt8(o);
          break;
        case 'u16':
          out[f.name] = buf.readUInt16LE(o);
          break;
        case 'u32':
          out[f.name] = buf.readUInt32LE(o);
          break;
        case 'i32':
          out[f.name] = buf.readInt32LE(o);
          break;
        case 'u64':
          out[f.name] = buf.readBigUInt64LE(o);
          break;
        case 'be16':
          out[f.name] = buf.readUInt16BE(o);
          break;
        case 'be32':
          out[f.name] = buf.readUInt32BE(o);
          break;
      }
    }
    return out as StructValue<F>;
  };

  const zero = (): StructValue<F> => decode(Buffer.alloc(total));

  return { cName, size: total, fields, encode, decode, zero };
}
