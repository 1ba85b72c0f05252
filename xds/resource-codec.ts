/**
 * The one converter from Envoy's JSON shape (what /config_dump prints, with
 * "@type") to protobuf: `pack()` returns a google.protobuf.Any ready to put in
 * a discovery response.
 *
 *   const codec = new ResourceCodec();
 *   const any = codec.pack({ '@type': TYPE_URL.clusters, name: 'web', connect_timeout: '1s' });
 *
 * protobufjs's own fromObject() silently drops fields it does not know; a
 * typo would then reach Envoy as a default value. This walker checks every key
 * against the schema first and collects every problem with its field path
 * ("$.filter_chains[0].filters[0].typed_config.stat_prefx: unknown field").
 * The proto3 JSON mapping is followed for well-known types (Duration "1.5s",
 * wrappers as bare values, Struct/Value as plain JSON, Any with "@type").
 */
import { createHash } from 'node:crypto';
import protobuf from 'protobufjs';
import { XdsError } from './errors.js';
import { messageNameOf } from './type-urls.js';
import { xdsProtos } from './protos.js';
import { makeAny } from './wire.js';

export interface AnyMessage {
  type_url: string;
  value: Uint8Array;
}

type Plain = Record<string, unknown>;

function isPlainObject(v: unknown): v is Plain {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function camel(snake: string): string {
  return snake.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

const WRAPPERS = new Set([
  'DoubleValue',
  'FloatValue',
  'Int64Value',
  'UInt64Value',
  'Int32Value',
  'UInt32Value',
  'BoolValue',
  'StringValue',
  'BytesValue',
]);

const INT32 = new Set(['int32', 'sint32', 'sfixed32']);
const UINT32 = new Set(['uint32', 'fixed32']);
const INT64 = new Set(['int64', 'sint64', 'sfixed64']);
const UINT64 = new Set(['uint64', 'fixed64']);

const DURATION_RE = /^(-)?(\d{1,12})(?:\.(\d{1,9}))?s$/;
const BASE64_RE = /^[A-Za-z0-9+/_-]*={0,2}$/;

export class ResourceCodec {
  readonly root: protobuf.Root;
  private readonly fieldIndex = new WeakMap<protobuf.Type, Map<string, protobuf.Field>>();
  /** Type lookups and "is a google.protobuf type", kept: protobufjs computes both by walking the namespace tree each time. */
  private readonly typeByName = new Map<string, protobuf.Type>();
  private readonly protobufPackage = new WeakMap<protobuf.Type, boolean>();

  constructor(root: protobuf.Root = xdsProtos()) {
    this.root = root;
  }

  /** The message type behind a type URL or full name, or undefined when the schema lacks it. */
  typeOf(typeUrlOrName: string): protobuf.Type | undefined {
    const known = this.typeByName.get(typeUrlOrName);
    if (known) return known;
    try {
      const type = this.root.lookupType(messageNameOf(typeUrlOrName));
      this.typeByName.set(typeUrlOrName, type);
      return type;
    } catch {
      // protobufjs throws for a name it lacks; "lacks it" is the answer asked for
      return undefined;
    }
  }

  private isProtobufPackage(type: protobuf.Type): boolean {
    let is = this.protobufPackage.get(type);
    if (is === undefined) {
      is = type.fullName.startsWith('.google.protobuf.');
      this.protobufPackage.set(type, is);
    }
    return is;
  }

  /**
   * Packs a resource given in Envoy JSON (with "@type") into an Any. Throws
   * XdsError RESOURCE_INVALID whose `problems` each start with a field path
   * rooted at `path`.
   */
  pack(resource: unknown, path = '$'): AnyMessage {
    const problems: string[] = [];
    const any = this.packAny(resource, path, problems);
    if (problems.length > 0 || any === undefined) {
      throw new XdsError('MESHD_XDS_RESOURCE_INVALID', `${problems[0] ?? `${path}: does not encode`}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, problems);
    }
    // encoded as an Any once, here: every response carrying it copies those bytes
    return makeAny(any.type_url, any.value);
  }

  /** Decodes an Any back into JSON (for tests and debugging; Durations come back as {seconds, nanos}). */
  unpack(any: AnyMessage): Plain {
    const type = this.typeOf(any.type_url);
    if (!type) throw new XdsError('MESHD_XDS_UNKNOWN_TYPE', `no message type for ${any.type_url}`);
    const obj = type.toObject(type.decode(any.value), { longs: String, enums: String, bytes: String, json: true, arrays: false });
    return { '@type': any.type_url, ...obj };
  }

  private packAny(value: unknown, path: string, problems: string[]): AnyMessage | undefined {
    if (!isPlainObject(value)) {
      problems.push(`${path}: expected an object with "@type"`);
      return undefined;
    }
    const typeUrl = value['@type'];
    if (typeof typeUrl !== 'string' || typeUrl === '') {
      problems.push(`${path}.@type: missing (every packed message names its type)`);
      return undefined;
    }
    const type = this.typeOf(typeUrl);
    if (!type) {
      problems.push(`${path}.@type: unknown message type "${typeUrl}"`);
      return undefined;
    }
    const before = problems.length;
    let normalized: unknown;
    if (this.isProtobufPackage(type) && this.isWellKnownJson(type)) {
      const keys = Object.keys(value).filter((k) => k !== '@type');
      const extra = keys.filter((k) => k !== 'value');
      if (extra.length > 0) problems.push(`${path}.${extra[0]}: unknown field (a packed ${type.name} carries only "value")`);
      normalized = this.message(type, value.value, `${path}.value`, problems);
    } else {
      const rest: Plain = {};
      for (const [k, v] of Object.entries(value)) if (k !== '@type') rest[k] = v;
      normalized = this.message(type, rest, path, problems);
    }
    if (problems.length > before || !isPlainObject(normalized)) return undefined;
    try {
      const bytes = type.encode(type.fromObject(normalized)).finish();
      return { type_url: typeUrl, value: bytes };
    } catch (e) {
      problems.push(`${path}: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    }
  }

  /** Well-known types whose JSON form is not an object of their fields. */
  private isWellKnownJson(type: protobuf.Type): boolean {
    const n = type.name;
    return (
      WRAPPERS.has(n) ||
      n === 'Duration' ||
      n === 'Timestamp' ||
      n === 'Struct' ||
      n === 'Value' ||
      n === 'ListValue' ||
      n === 'FieldMask'
    );
  }

  private fields(type: protobuf.Type): Map<string, protobuf.Field> {
    let idx = this.fieldIndex.get(type);
    if (!idx) {
      type.resolveAll();
      idx = new Map();
      for (const f of type.fieldsArray) {
        idx.set(f.name, f);
        idx.set(camel(f.name), f);
        const jsonName = f.options?.json_name;
        if (typeof jsonName === 'string') idx.set(jsonName, f);
      }
      this.fieldIndex.set(type, idx);
    }
    return idx;
  }

  /** A message value in proto3 JSON → the object protobufjs fromObject() accepts. */
  private message(type: protobuf.Type, value: unknown, path: string, problems: string[]): unknown {
    if (this.isProtobufPackage(type)) {
      const special = this.wellKnown(type, value, path, problems);
      if (special !== NOT_SPECIAL) return special;
    }
    if (!isPlainObject(value)) {
      problems.push(`${path}: expected an object (${type.fullName.slice(1)}), got ${describe(value)}`);
      return undefined;
    }
    const out: Plain = {};
    const idx = this.fields(type);
    for (const [key, v] of Object.entries(value)) {
      const field = idx.get(key);
      const fpath = `${path}.${key}`;
      if (!field) {
        problems.push(`${fpath}: unknown field of ${type.fullName.slice(1)}`);
        continue;
      }
      if (field.name in out) {
        problems.push(`${fpath}: field given twice (as "${field.name}" and "${camel(field.name)}")`);
        continue;
      }
      if (v === null && field.resolvedType?.fullName !== '.google.protobuf.Value') continue;
      const norm = this.field(field, v, fpath, problems);
      if (norm !== undefined) out[field.name] = norm;
    }
    for (const oneof of type.oneofsArray) {
      const set = oneof.fieldsArray.filter((f) => out[f.name] !== undefined);
      if (set.length > 1) {
        problems.push(`${path}: fields ${set.map((f) => `"${f.name}"`).join(' and ')} are alternatives (oneof ${oneof.name}); set one`);
      }
    }
    return out;
  }

  private field(field: protobuf.Field, value: unknown, path: string, problems: string[]): unknown {
    if (field.map) {
      if (!isPlainObject(value)) {
        problems.push(`${path}: expected an object (map), got ${describe(value)}`);
        return undefined;
      }
      const keyType = field instanceof protobuf.MapField ? field.keyType : 'string';
      const out: Plain = {};
      for (const [k, v] of Object.entries(value)) {
        if (keyType === 'bool' && k !== 'true' && k !== 'false') problems.push(`${path}.${k}: map key must be "true" or "false"`);
        else if (keyType !== 'string' && keyType !== 'bool' && !/^-?\d+$/.test(k)) problems.push(`${path}.${k}: map key must be an integer`);
        out[k] = this.single(field, v, `${path}.${k}`, problems);
      }
      return out;
    }
    if (field.repeated) {
      if (!Array.isArray(value)) {
        problems.push(`${path}: expected an array, got ${describe(value)}`);
        return undefined;
      }
      return value.map((v: unknown, i) => this.single(field, v, `${path}[${i}]`, problems));
    }
    return this.single(field, value, path, problems);
  }

  private single(field: protobuf.Field, value: unknown, path: string, problems: string[]): unknown {
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Enum) return enumValue(rt, value, path, problems);
    if (rt instanceof protobuf.Type) return this.message(rt, value, path, problems);
    return scalar(field.type, value, path, problems);
  }

  private wellKnown(type: protobuf.Type, value: unknown, path: string, problems: string[]): unknown {
    switch (type.name) {
      case 'Any':
        return this.packAny(value, path, problems);
      case 'Duration': {
        const m = typeof value === 'string' ? DURATION_RE.exec(value) : null;
        if (!m) {
          problems.push(`${path}: expected a duration string like "1.5s", got ${describe(value)}`);
          return undefined;
        }
        const sign = m[1] ? -1 : 1;
        const nanos = Number((m[3] ?? '').padEnd(9, '0'));
        return { seconds: sign * Number(m[2]), nanos: sign * nanos };
      }
      case 'Timestamp': {
        const ms = typeof value === 'string' ? Date.parse(value) : NaN;
        if (!Number.isFinite(ms)) {
          problems.push(`${path}: expected an RFC 3339 timestamp, got ${describe(value)}`);
          return undefined;
        }
        return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
      }
      case 'Struct':
        if (!isPlainObject(value)) {
          problems.push(`${path}: expected an object (Struct), got ${describe(value)}`);
          return undefined;
        }
        return { fields: Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonValue(this.root, v, `${path}.${k}`, problems)])) };
      case 'Value':
        return jsonValue(this.root, value, path, problems);
      case 'ListValue':
        if (!Array.isArray(value)) {
          problems.push(`${path}: expected an array (ListValue), got ${describe(value)}`);
          return undefined;
        }
        return { values: value.map((v: unknown, i) => jsonValue(this.root, v, `${path}[${i}]`, problems)) };
      case 'FieldMask':
        if (typeof value !== 'string') {
          problems.push(`${path}: expected a comma-separated field mask string, got ${describe(value)}`);
          return undefined;
        }
        return { paths: value === '' ? [] : value.split(',').map((p) => p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)) };
      default:
        if (WRAPPERS.has(type.name)) {
          const inner = type.fields.value;
          if (!inner) return NOT_SPECIAL;
          const v = scalar(inner.type, value, path, problems);
          return v === undefined ? undefined : { value: v };
        }
        return NOT_SPECIAL;
    }
  }
}

const NOT_SPECIAL = Symbol('not a well-known JSON type');

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `"${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/**
 * google.protobuf.Value's field names: protobufjs defines the well-known
 * types itself, in camelCase, whatever casing the .proto files use.
 */
let valueNames: Record<'null' | 'number' | 'string' | 'bool' | 'struct' | 'list', string> | undefined;

function valueFieldNames(root: protobuf.Root): NonNullable<typeof valueNames> {
  if (!valueNames) {
    const v = root.lookupType('google.protobuf.Value');
    const pick = (snake: string): string => (v.fields[snake] ? snake : camel(snake));
    valueNames = {
      null: pick('null_value'),
      number: pick('number_value'),
      string: pick('string_value'),
      bool: pick('bool_value'),
      struct: pick('struct_value'),
      list: pick('list_value'),
    };
  }
  return valueNames;
}

function jsonValue(root: protobuf.Root, v: unknown, path: string, problems: string[]): unknown {
  const n = valueFieldNames(root);
  if (v === null) return { [n.null]: 0 };
  if (typeof v === 'number') return { [n.number]: v };
  if (typeof v === 'string') return { [n.string]: v };
  if (typeof v === 'boolean') return { [n.bool]: v };
  if (Array.isArray(v)) return { [n.list]: { values: v.map((x: unknown, i) => jsonValue(root, x, `${path}[${i}]`, problems)) } };
  if (isPlainObject(v)) {
    return {
      [n.struct]: { fields: Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonValue(root, x, `${path}.${k}`, problems)])) },
    };
  }
  problems.push(`${path}: not a JSON value`);
  return undefined;
}

function enumValue(e: protobuf.Enum, value: unknown, path: string, problems: string[]): number | undefined {
  if (typeof value === 'string') {
    const n = e.values[value];
    if (n !== undefined) return n;
  } else if (typeof value === 'number' && Number.isInteger(value)) {
    return value;
  }
  const names = Object.keys(e.values);
  problems.push(`${path}: ${describe(value)} is not a value of ${e.fullName.slice(1)} (${names.slice(0, 8).join(', ')}${names.length > 8 ? ', …' : ''})`);
  return undefined;
}

function integer(value: unknown): bigint | undefined {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return BigInt(value);
  return undefined;
}

function scalar(type: string, value: unknown, path: string, problems: string[]): unknown {
  const bad = (want: string): undefined => {
    problems.push(`${path}: expected ${want}, got ${describe(value)}`);
    return undefined;
  };
  if (type === 'string') return typeof value === 'string' ? value : bad('a string');
  if (type === 'bool') return typeof value === 'boolean' ? value : bad('true or false');
  if (type === 'double' || type === 'float') {
    if (typeof value === 'number') return value;
    if (value === 'NaN' || value === 'Infinity' || value === '-Infinity') return Number(value);
    if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
    return bad('a number');
  }
  if (type === 'bytes') {
    return typeof value === 'string' && BASE64_RE.test(value) ? Buffer.from(value, 'base64') : bad('base64 bytes');
  }
  const n = integer(value);
  if (INT32.has(type)) return n !== undefined && n >= -(2n ** 31n) && n < 2n ** 31n ? Number(n) : bad('a 32-bit integer');
  if (UINT32.has(type)) return n !== undefined && n >= 0n && n < 2n ** 32n ? Number(n) : bad('an unsigned 32-bit integer');
  if (INT64.has(type)) return n !== undefined && n >= -(2n ** 63n) && n < 2n ** 63n ? n.toString() : bad('a 64-bit integer');
  if (UINT64.has(type)) return n !== undefined && n >= 0n && n < 2n ** 64n ? n.toString() : bad('an unsigned 64-bit integer');
  return bad(`a ${type}`);
}

/** Content version of an encoded resource: the first 16 hex digits of its SHA-256. */
export function contentVersion(any: AnyMessage): string {
  return createHash('sha256').update(any.type_url).update(any.value).digest('hex').slice(0, 16);
}
