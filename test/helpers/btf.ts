/**
 * What a compiled BPF object's BTF says (via `bpftool -j btf dump file`) about
 * the structs, enums and maps it shares with the agent, and the comparisons
 * with their TypeScript mirrors (codecs, src/datapath/abi.ts tables).
 *
 *   const btf = await readBtf(bpfObjectPath('lxc'));
 *   layoutDiff(PolicyKey, btf.structs.get('meshd_policy_key'));   // [] when they agree
 *   enumDiff(abiEnums[0], btf.enums.get(abiEnums[0].cName));      // [] when they agree
 */
import { z } from 'zod';
import type { AbiEnum } from '../../src/datapath/abi.js';
import type { FieldLayout, FieldType } from '../../src/datapath/codec.js';
import { run } from '../../src/util/exec.js';

const BtfTypeSchema = z.looseObject({
  id: z.number().int(),
  kind: z.string(),
  name: z.string().optional(),
  size: z.number().int().optional(),
  type_id: z.number().int().optional(),
  nr_elems: z.number().int().optional(),
  encoding: z.string().optional(),
  members: z
    .array(z.looseObject({ name: z.string(), type_id: z.number().int(), bits_offset: z.number().int(), bitfield_size: z.number().int().optional() }))
    .optional(),
  values: z.array(z.looseObject({ name: z.string(), val: z.number().int() })).optional(),
  vars: z.array(z.looseObject({ type_id: z.number().int() })).optional(),
  linkage: z.string().optional(),
});
type BtfType = z.infer<typeof BtfTypeSchema>;
const BtfDumpSchema = z.looseObject({ types: z.array(BtfTypeSchema) });

export interface BtfStruct {
  name: string;
  size: number;
  /** `type` as `describeType` spells it, e.g. `u32`, `be16`, `u8[16]`. */
  members: Array<{ name: string; offset: number; type: string }>;
}

export interface BtfEnum {
  name: string;
  values: Map<string, number>;
}

export interface Btf {
  structs: Map<string, BtfStruct>;
  enums: Map<string, BtfEnum>;
  /** Variables of each data section by section name (`.maps` holds the map names). */
  sections: Map<string, string[]>;
  /** Functions with global linkage: the object's programs. */
  programs: Set<string>;
}

/** The structs, enums and data sections of a BTF dump (bpftool's JSON). */
export function parseBtf(json: unknown): Btf {
  const { types } = BtfDumpSchema.parse(json);
  const byId = new Map<number, BtfType>(types.map((t) => [t.id, t]));
  const describe = (id: number): string => describeType(byId, id);
  const out: Btf = { structs: new Map(), enums: new Map(), sections: new Map(), programs: new Set() };
  for (const t of types) {
    if (!t.name || t.name === '(anon)') continue;
    if (t.kind === 'STRUCT' && t.members) {
      out.structs.set(t.name, {
        name: t.name,
        size: t.size ?? 0,
        members: t.members.map((m) => ({
          name: m.name,
          offset: m.bits_offset / 8,
          type: m.bitfield_size || m.bits_offset % 8 !== 0 ? `bitfield(${describe(m.type_id)})` : describe(m.type_id),
        })),
      });
    } else if ((t.kind === 'ENUM' || t.kind === 'ENUM64') && t.values) {
      out.enums.set(t.name, { name: t.name, values: new Map(t.values.map((v) => [v.name, v.val])) });
    } else if (t.kind === 'DATASEC' && t.vars) {
      out.sections.set(t.name, t.vars.map((v) => byId.get(v.type_id)?.name ?? `#${v.type_id}`));
    } else if (t.kind === 'FUNC' && t.linkage === 'global') {
      out.programs.add(t.name);
    }
  }
  return out;
}

/**
 * A member type as the codecs see it: integers as `u8`…`u64` / `i32`, the
 * network-order typedefs as `be16` / `be32` (the typedef is what says the byte
 * order), enums as integers of their size, arrays (nested ones flattened) as
 * `elem[count]`, structs and unions by name.
 */
function describeType(byId: Map<number, BtfType>, id: number): string {
  const t = byId.get(id);
  if (!t) return `?${id}`;
  switch (t.kind) {
    case 'TYPEDEF':
      if (t.name === '__be16' || t.name === '__be32' || t.name === '__be64') return t.name.slice(2);
      return describeType(byId, t.type_id ?? 0);
    case 'CONST':
    case 'VOLATILE':
    case 'RESTRICT':
    case 'TYPE_TAG':
      return describeType(byId, t.type_id ?? 0);
    case 'INT':
    case 'ENUM':
    case 'ENUM64':
      return `${t.encoding === 'SIGNED' ? 'i' : 'u'}${(t.size ?? 0) * 8}`;
    case 'ARRAY': {
      const elem = describeType(byId, t.type_id ?? 0);
      const nested = /^(.*)\[(\d+)\]$/.exec(elem);
      const n = t.nr_elems ?? 0;
      return nested ? `${nested[1]}[${Number(nested[2]) * n}]` : `${elem}[${n}]`;
    }
    case 'STRUCT':
    case 'UNION':
      return `${t.kind.toLowerCase()} ${t.name ?? '(anon)'}`;
    default:
      return t.kind.toLowerCase();
  }
}

/** A codec field's type in `describeType`'s spelling: `{ bytes: 16 }` is `u8[16]`, `{ bytes: 8, align: 4 }` is `u32[2]`. */
export function describeField(t: FieldType): string {
  if (typeof t !== 'object') return t;
  const align = t.align ?? 1;
  return `u${align * 8}[${t.bytes / align}]`;
}

export async function readBtf(objectPath: string): Promise<Btf> {
  const { stdout } = await run('bpftool', ['-j', 'btf', 'dump', 'file', objectPath]);
  return parseBtf(JSON.parse(stdout));
}

export async function btfStructs(objectPath: string): Promise<Map<string, BtfStruct>> {
  return (await readBtf(objectPath)).structs;
}

/** Differences between a codec's layout and the BTF struct (size, then each field's name, offset and type), empty if equal. */
export function layoutDiff(codec: { cName: string; size: number; fields: readonly FieldLayout[] }, btf: BtfStruct | undefined): string[] {
  if (!btf) return [`struct ${codec.cName} not found in BTF`];
  const diffs: string[] = [];
  if (btf.size !== codec.size) diffs.push(`size: C ${btf.size}, TS ${codec.size}`);
  const n = Math.max(btf.members.length, codec.fields.length);
  for (let i = 0; i < n; i += 1) {
    const c = btf.members[i];
    const f = codec.fields[i];
    const cs = c ? `${c.name}@${c.offset}: ${c.type}` : 'nothing';
    const ts = f ? `${f.name}@${f.offset}: ${describeField(f.type)}` : 'nothing';
    if (cs !== ts) diffs.push(`field ${i}: C ${cs}, TS ${ts}`);
  }
  return diffs;
}

/**
 * Differences between a TypeScript table and the C enum it mirrors, empty if
 * equal: every C member must carry the table's prefix and have the same value
 * under its key, and the table must have no key the enum lacks.
 */
export function enumDiff(table: AbiEnum, btf: BtfEnum | undefined): string[] {
  if (!btf) return [`enum ${table.cName} not found in BTF`];
  const diffs: string[] = [];
  const seen = new Set<string>();
  for (const [name, val] of btf.values) {
    if (!name.startsWith(table.prefix)) {
      diffs.push(`${name}: does not start with ${table.prefix}`);
      continue;
    }
    const key = name.slice(table.prefix.length);
    seen.add(key);
    const ts = Object.hasOwn(table.values, key) ? table.values[key] : undefined;
    if (ts === undefined) diffs.push(`${name}: C ${val}, missing in TS`);
    else if (ts !== val) diffs.push(`${name}: C ${val}, TS ${ts}`);
  }
  for (const [key, val] of Object.entries(table.values)) {
    if (!seen.has(key)) diffs.push(`${table.prefix}${key}: TS ${val}, missing in C`);
  }
  return diffs;
}
