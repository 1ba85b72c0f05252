/**
 * Kafka's primitive types (kafka.apache.org/protocol, "Protocol Primitive
 * Types"): big-endian integers, zig-zag varints, classic strings/arrays with
 * int16/int32 lengths, and the "compact" forms of flexible versions (KIP-482)
 * whose lengths are unsigned varints of length + 1, plus tagged fields.
 *
 * `Reader` throws KafkaError(MESHD_KAFKA_MALFORMED) on anything that runs
 * past the end of its buffer or has an impossible length; it never returns
 * partial values. `Writer` builds a message; `flexible` picks the compact
 * encodings, as the message's version does.
 */
import { KafkaError } from './errors.js';

function malformed(what: string): never {
  throw new KafkaError('MESHD_KAFKA_MALFORMED', what);
}

export class Reader {
  offset: number;

  constructor(
    readonly buf: Buffer,
    offset = 0,
    readonly flexible = false,
  ) {
    this.offset = offset;
  }

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  private need(n: number, what: string): void {
    if (n < 0 || this.offset + n > this.buf.length) malformed(`${what}: needs ${n} bytes at offset ${this.offset}, ${this.remaining} left`);
  }

  int8(): number {
    this.need(1, 'int8');
    return this.buf.readInt8(this.offset++);
  }

  int16(): number {
    this.need(2, 'int16');
    const v = this.buf.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }

  int32(): number {
    this.need(4, 'int32');
    const v = this.buf.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  skip(n: number, what = 'field'): void {
    this.need(n, what);
    this.offset += n;
  }

  uvarint(): number {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      this.need(1, 'varint');
      const b = this.buf[this.offset++] ?? 0;
      v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
    }
    return malformed('varint longer than 5 bytes');
  }

  /** Length of a string/bytes/array: -1 is null. */
  private length(classicBytes: 2 | 4): number {
    if (this.flexible) return this.uvarint() - 1;
    return classicBytes === 2 ? this.int16() : this.int32();
  }

  nullableString(): string | null {
    const n = this.length(2);
    if (n < -1) malformed(`string length ${n}`);
    if (n === -1) return null;
    this.need(n, 'string');
    const s = this.buf.toString('utf8', this.offset, this.offset + n);
    this.offset += n;
    return s;
  }

  string(): string {
    const s = this.nullableString();
    if (s === null) malformed('null where a string is required');
    return s;
  }

  /** A classic (int16-length) nullable string, as in the request header even in flexible versions. */
  classicNullableString(): string | null {
    const n = this.int16();
    if (n < -1) malformed(`string length ${n}`);
    if (n === -1) return null;
    this.need(n, 'string');
    const s = this.buf.toString('utf8', this.offset, this.offset + n);
    this.offset += n;
    return s;
  }

  skipBytes(): void {
    const n = this.length(4);
    if (n < -1) malformed(`bytes length ${n}`);
    if (n > 0) this.skip(n, 'bytes');
  }

  /** Array length; -1 for a null array. */
  arrayLength(): number {
    const n = this.length(4);
    if (n < -1) malformed(`array length ${n}`);
    // Every element takes at least one byte: a count beyond the bytes left is a lie.
    if (n > this.remaining) malformed(`array of ${n} elements with ${this.remaining} bytes left`);
    return n;
  }

  array<T>(item: (r: Reader) => T): T[] | null {
    const n = this.arrayLength();
    if (n === -1) return null;
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(item(this));
    return out;
  }

  /** Tagged fields (flexible versions only): skipped. */
  taggedFields(): void {
    if (!this.flexible) return;
    const n = this.uvarint();
    if (n > this.remaining) malformed(`${n} tagged fields with ${this.remaining} bytes left`);
    for (let i = 0; i < n; i++) {
      this.uvarint(); // tag
      this.skip(this.uvarint(), 'tagged field');
    }
  }
}

export class Writer {
  private readonly parts: Buffer[] = [];

  constructor(readonly flexible = false) {}

  private push(b: Buffer): this {
    this.parts.push(b);
    return this;
  }

  int8(v: number): this {
    const b = Buffer.alloc(1);
    b.writeInt8(v);
    return this.push(b);
  }

  bool(v: boolean): this {
    return this.int8(v ? 1 : 0);
  }

  int16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    return this.push(b);
  }

  int32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    return this.push(b);
  }

  int64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(v);
    return this.push(b);
  }

  uuid(bytes: Buffer = Buffer.alloc(16)): this {
    return this.push(Buffer.from(bytes.subarray(0, 16)));
  }

  uvarint(v: number): this {
    const out: number[] = [];
    let n = v;
    while (n >= 0x80) {
      out.push((n & 0x7f) | 0x80);
      n = Math.floor(n / 128);
    }
    out.push(n);
    return this.push(Buffer.from(out));
  }

  private length(n: number, classicBytes: 2 | 4): this {
    if (this.flexible) return this.uvarint(n + 1);
    return classicBytes === 2 ? this.int16(n) : this.int32(n);
  }

  nullableString(s: string | null): this {
    if (s === null) return this.length(-1, 2);
    const b = Buffer.from(s, 'utf8');
    return this.length(b.length, 2).push(b);
  }

  string(s: string): this {
    return this.nullableString(s);
  }

  nullableBytes(b: Buffer | null): this {
    if (b === null) return this.length(-1, 4);
    return this.length(b.length, 4).push(b);
  }

  array<T>(items: readonly T[] | null, item: (w: this, v: T) => void): this {
    if (items === null) return this.length(-1, 4);
    this.length(items.length, 4);
    for (const v of items) item(this, v);
    return this;
  }

  /** No tagged fields (flexible versions only). */
  tags(): this {
    return this.flexible ? this.uvarint(0) : this;
  }

  raw(b: Buffer): this {
    return this.push(b);
  }

  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}
