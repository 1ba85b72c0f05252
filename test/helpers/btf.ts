/**
 * Struct layouts from a compiled BPF object's BTF (via `bpftool -j btf dump`),
 * for checking the TypeScript codecs against the C headers.
 */
import { run } from '../../src/util/exec.js';
import type { FieldLayout } from '../../src/datapath/codec.js';

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  members?: Array<{ name: string; type_id: number; bits_offset: number }>;
}

export interface BtfStruct {
  name: string;
  size: number;
  members: Array<{ name: string; offset: number }>;
}

export async function btfStructs(objectPath: string): Promise<Map<string, BtfStruct>> {
  const { stdout } = await run('bpftool', ['-j', 'btf', 'dump', 'file', objectPath]);
  const parsed: unknown = JSON.parse(stdout);
  if (typeof parsed !== 'object' || parsed === null || !('types' in parsed) || !Array.isArray(parsed.types)) {
    throw new Error(`bpftool btf dump ${objectPath}: no "types" array`);
  }
  const out = new Map<string, BtfStruct>();
  for (const t of parsed.types as BtfType[]) {
    if (t.kind !== 'STRUCT' || !t.name || !t.members) continue;
    out.set(t.name, {
      name: t.name,
      size: t.size ?? 0,
      members: t.members.map((m) => ({ name: m.name, offset: m.bits_offset / 8 })),
    });
  }
  return out;
}

/** Differences between a codec's layout and the BTF struct, empty if equal. */
export function layoutDiff(codec: { cName: string; size: number; fields: readonly FieldLayout[] }, btf: BtfStruct | undefined): string[] {
  if (!btf) return [`struct ${codec.cName} not found in BTF`];
  const diffs: string[] = [];
  if (btf.size !== codec.size) diffs.push(`size: C ${btf.size}, TS ${codec.size}`);
  const cFields = btf.members.map((m) => `${m.name}@${m.offset}`).join(', ');
  const tsFields = codec.fields.map((f) => `${f.name}@${f.offset}`).join(', ');
  if (cFields !== tsFields) diffs.push(`fields: C [${cFields}], TS [${tsFields}]`);
  return diffs;
}
