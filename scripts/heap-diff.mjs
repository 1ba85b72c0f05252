#!/usr/bin/env node
// Compares two V8 heap snapshots (v8.writeHeapSnapshot(), e.g. the chaos long
// run's MESHD_CHAOS_HEAP_SNAPSHOTS): objects and their own sizes grouped by
// constructor (node type + name), sorted by growth.
//   node scripts/heap-diff.mjs base.heapsnapshot end.heapsnapshot [--top 40]
import { readFileSync } from 'node:fs';

function summarize(file) {
  const s = JSON.parse(readFileSync(file, 'utf8'));
  const f = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const width = f.length;
  const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((k) => f.indexOf(k));
  const groups = new Map();
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + iType]];
    // Strings are grouped by type only (their names are their contents).
    const name = type === 'string' || type === 'concatenated string' || type === 'sliced string' || type === 'number' ? '' : s.strings[s.nodes[i + iName]];
    const key = `${type}:${String(name).slice(0, 80)}`;
    const g = groups.get(key) ?? { count: 0, size: 0 };
    g.count += 1;
    g.size += s.nodes[i + iSize];
    groups.set(key, g);
  }
  return groups;
}

const [a, b] = process.argv.slice(2).filter((x) => !x.startsWith('--'));
if (!a || !b) {
  console.error('usage: heap-diff.mjs BASE END [--top N]');
  process.exit(2);
}
const topAt = process.argv.indexOf('--top');
const top = topAt > 0 ? Number(process.argv[topAt + 1]) : 40;
const base = summarize(a);
const end = summarize(b);
const rows = [];
for (const key of new Set([...base.keys(), ...end.keys()])) {
  const x = base.get(key) ?? { count: 0, size: 0 };
  const y = end.get(key) ?? { count: 0, size: 0 };
  rows.push({ key, dCount: y.count - x.count, dSize: y.size - x.size, count: y.count, size: y.size });
}
rows.sort((p, q) => q.dSize - p.dSize);
for (const r of rows.slice(0, top)) console.log(`${String(r.dSize).padStart(10)} B ${String(r.dCount).padStart(8)} objs  (now ${r.count}, ${r.size} B)  ${r.key}`);
