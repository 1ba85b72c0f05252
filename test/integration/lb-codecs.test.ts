/**
 * The socket LB's codecs against the compiled object: needs bpf/build/sock.o
 * and bpftool, so it is an integration test (the pure codec tests sit beside
 * lb-maps.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lbCodecs } from '../../src/datapath/lb/lb-maps.js';
import { bpfObjectPath } from '../../src/util/paths.js';
import { btfStructs, layoutDiff } from '../helpers/btf.js';

test('every socket-LB codec matches its struct in sock.o BTF (sizes and field offsets)', async () => {
  const structs = await btfStructs(bpfObjectPath('sock'));
  for (const c of lbCodecs) assert.deepEqual(layoutDiff(c, structs.get(c.cName)), [], c.cName);
});
