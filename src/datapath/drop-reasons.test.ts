import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { repoPath } from '../util/paths.js';
import { DropReason, dropReasonName } from './drop-reasons.js';

test('drop reasons mirror bpf/include/drop_reasons.h exactly', () => {
  const header = readFileSync(repoPath('bpf', 'include', 'drop_reasons.h'), 'utf8');
  const fromC = new Map<string, number>();
  for (const m of header.matchAll(/^\s*MESHD_DROP_([A-Z0-9_]+)\s*=\s*(\d+),/gm)) {
    if (m[1] !== undefined && m[1] !== 'MAX') fromC.set(m[1], Number(m[2]));
  }
  assert.ok(header.includes('src/datapath/drop-reasons.ts'), 'the header names its mirror');
  assert.deepEqual(Object.fromEntries(fromC), { ...DropReason });
});

test('unknown drop reasons are named, not thrown', () => {
  assert.equal(dropReasonName(1), 'POLICY_DENY');
  assert.equal(dropReasonName(250), 'UNKNOWN_250');
});
