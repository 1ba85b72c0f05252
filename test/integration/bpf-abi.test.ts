/**
 * C and TypeScript agree: every constant (src/datapath/abi.ts) and every
 * struct codec that crosses the boundary is compared with the BTF of the
 * compiled objects (bpf/build/*.o), so a value or layout changed on one side
 * only fails here. The first tests show that the comparisons reject a
 * deliberately wrong mirror, checked against the same objects.
 *
 * Needs the compiled objects (`make -C bpf`) and bpftool; not root.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { abiEnums, DropReason, VerdictCode, type AbiEnum } from '../../src/datapath/abi.js';
import { defineStruct } from '../../src/datapath/codec.js';
import { LbMapName, lbCodecs } from '../../src/datapath/lb/lb-maps.js';
import { datapathCodecs, TunnelValue } from '../../src/datapath/maps.js';
import { NpMapName, NpProgram, nodePortCodecs } from '../../src/datapath/nodeport/maps.js';
import { ProbeStats } from '../../src/datapath/probe.js';
import { SOCK_PROGRAMS } from '../../src/datapath/lb/sock-lb.js';
import { bpfObjectPath } from '../../src/util/paths.js';
import { enumDiff, layoutDiff, readBtf, type Btf } from '../helpers/btf.js';

/** The objects whose BTF holds the shared enums and structs. */
const OBJECTS = ['lxc', 'overlay', 'sock', 'sockops', 'probe', 'nodeport'] as const;
type ObjectName = (typeof OBJECTS)[number];

const btfCache = new Map<ObjectName, Promise<Btf>>();
function btfOf(name: ObjectName): Promise<Btf> {
  let p = btfCache.get(name);
  if (!p) {
    p = readBtf(bpfObjectPath(name));
    btfCache.set(name, p);
  }
  return p;
}

const verdicts = (): AbiEnum => {
  const found = abiEnums.find((e) => e.cName === 'meshd_verdict');
  assert.ok(found, 'abiEnums lists meshd_verdict');
  return found;
};

test('enumDiff rejects a table whose value, member set or prefix differs from the object, and accepts the right one', async () => {
  const lxc = await btfOf('lxc');
  const right = verdicts();
  const inC = lxc.enums.get(right.cName);
  assert.deepEqual(enumDiff(right, inC), []);

  assert.deepEqual(enumDiff({ ...right, values: { ...VerdictCode, DENY: 7 } }, inC), ['MESHD_VERDICT_DENY: C 2, TS 7']);
  const { REDIRECT: _dropped, ...withoutRedirect } = VerdictCode;
  assert.deepEqual(enumDiff({ ...right, values: withoutRedirect }, inC), ['MESHD_VERDICT_REDIRECT: C 3, missing in TS']);
  assert.deepEqual(enumDiff({ ...right, values: { ...VerdictCode, PUNT: 4 } }, inC), ['MESHD_VERDICT_PUNT: TS 4, missing in C']);
  assert.equal(enumDiff({ ...right, prefix: 'MESHD_VERDICTS_' }, inC).length, 3 + 3);
  assert.deepEqual(enumDiff({ ...right, cName: 'meshd_no_such_enum' }, lxc.enums.get('meshd_no_such_enum')), ['enum meshd_no_such_enum not found in BTF']);

  const reasons = abiEnums.find((e) => e.cName === 'meshd_drop_reason');
  assert.ok(reasons);
  // a reason the C side has and the mirror forgot (its bound, MAX, included)
  const { TUNNEL_FAILED: _tunnel, ...stale } = DropReason;
  assert.deepEqual(enumDiff({ ...reasons, values: { ...stale, MAX: 10 } }, lxc.enums.get(reasons.cName)), [
    'MESHD_DROP_TUNNEL_FAILED: C 10, missing in TS',
    'MESHD_DROP_MAX: C 11, TS 10',
  ]);
});

test('layoutDiff rejects a codec whose size, offset or field type differs from the object, byte order included', async () => {
  const lxc = await btfOf('lxc');
  const key = lxc.structs.get('meshd_policy_key');
  const fields = [
    ['prefixlen', 'u32'],
    ['ep_id', 'u32'],
    ['identity', 'u32'],
    ['egress', 'u8'],
    ['proto', 'u8'],
  ] as const;
  assert.deepEqual(layoutDiff(defineStruct('meshd_policy_key', [...fields, ['dport', 'be16']]), key), []);
  // same size and offsets, host byte order where C says __be16
  assert.deepEqual(layoutDiff(defineStruct('meshd_policy_key', [...fields, ['dport', 'u16']]), key), [
    'field 5: C dport@14: be16, TS dport@14: u16',
  ]);
  // a u32 port moves nothing before it but grows the struct
  assert.deepEqual(layoutDiff(defineStruct('meshd_policy_key', [...fields, ['dport', 'u32']]), key), [
    'size: C 16, TS 20',
    'field 5: C dport@14: be16, TS dport@16: u32',
  ]);
  // an array of the right size but the wrong element (u8[16] vs u32[4]) and a missing field
  const natValue = lxc.structs.get('meshd_nat_value');
  assert.deepEqual(
    layoutDiff(
      defineStruct('meshd_nat_value', [
        ['addr', { bytes: 16, align: 4 }],
        ['port', 'be16'],
        ['pad', 'u16'],
      ]),
      natValue,
    ),
    ['size: C 24, TS 20', 'field 0: C addr@0: u8[16], TS addr@0: u32[4]', 'field 3: C svc_id@20: u32, TS nothing'],
  );
});

test('every constant table in src/datapath/abi.ts equals its enum in each object that has it', async () => {
  const all = await Promise.all(OBJECTS.map(async (o) => [o, await btfOf(o)] as const));
  for (const table of abiEnums) {
    const holders = all.filter(([, btf]) => btf.enums.has(table.cName));
    assert.ok(holders.length > 0, `enum ${table.cName} is in no object's BTF (is the header's anchor there?)`);
    for (const [o, btf] of holders) assert.deepEqual(enumDiff(table, btf.enums.get(table.cName)), [], `${table.cName} in ${o}.o`);
  }
});

test('every meshd_* enum of the objects has its table in src/datapath/abi.ts', async () => {
  const mirrored = new Set(abiEnums.map((e) => e.cName));
  for (const o of OBJECTS) {
    const missing = [...(await btfOf(o)).enums.keys()].filter((n) => n.startsWith('meshd_') && !mirrored.has(n));
    assert.deepEqual(missing, [], `${o}.o`);
  }
});

test('every struct codec matches its struct in the object: size and each field name, offset and type', async () => {
  const byObject: Array<[ObjectName, ReadonlyArray<Parameters<typeof layoutDiff>[0]>]> = [
    ['lxc', datapathCodecs],
    ['overlay', [TunnelValue]],
    ['sock', lbCodecs],
    ['probe', [ProbeStats]],
    ['nodeport', nodePortCodecs],
  ];
  for (const [o, codecs] of byObject) {
    const btf = await btfOf(o);
    for (const c of codecs) assert.deepEqual(layoutDiff(c, btf.structs.get(c.cName)), [], `${c.cName} in ${o}.o`);
  }
});

test('the socket-LB maps the agent opens are maps of sock.o, and the programs it attaches are exactly sock.o\'s', async () => {
  const btf = await btfOf('sock');
  const maps = new Set(btf.sections.get('.maps'));
  for (const name of Object.values(LbMapName)) assert.ok(maps.has(name), `${name} is not a map of sock.o`);
  assert.deepEqual(SOCK_PROGRAMS.map(([name]) => name).sort(), [...btf.programs].sort());
});

test('the nodeport maps and programs the agent uses are nodeport.o\'s', async () => {
  const btf = await btfOf('nodeport');
  const maps = new Set(btf.sections.get('.maps'));
  for (const name of Object.values(NpMapName)) assert.ok(maps.has(name), `${name} is not a map of nodeport.o`);
  assert.deepEqual(Object.values(NpProgram).sort(), [...btf.programs].sort());
});
