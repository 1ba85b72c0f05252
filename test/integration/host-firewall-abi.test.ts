/**
 * bpf/host.c against its TypeScript mirrors, through host.o's BTF: every
 * meshd_* enum it carries equals its table in src/datapath/abi.ts (the host
 * constants, the audit flag and the AUDIT event type included), and the
 * programs the agent attaches are host.o's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { abiEnums, ConfigFlag, EventType, Host } from '../../src/datapath/abi.js';
import { HostProgram } from '../../src/datapath/host/maps.js';
import { bpfObjectPath } from '../../src/util/paths.js';
import { enumDiff, readBtf } from '../helpers/btf.js';

test('host.o: every meshd_* enum equals its table, the programs are the agent\'s', async () => {
  const btf = await readBtf(bpfObjectPath('host'));
  const mirrored = new Map(abiEnums.map((e) => [e.cName, e]));
  const enums = [...btf.enums.keys()].filter((n) => n.startsWith('meshd_'));
  assert.ok(enums.includes('meshd_host') && enums.includes('meshd_event_type'), `host.o carries the host and event enums: ${enums.join(', ')}`);
  for (const name of enums) {
    const table = mirrored.get(name);
    assert.ok(table, `enum ${name} has a table in src/datapath/abi.ts`);
    assert.deepEqual(enumDiff(table, btf.enums.get(name)), [], `${name} in host.o`);
  }
  // The check bites: a wrong mirror is reported.
  const host = mirrored.get('meshd_host');
  assert.ok(host);
  assert.deepEqual(enumDiff({ ...host, values: { ...Host, EP_KEY: 2 } }, btf.enums.get('meshd_host')), ['MESHD_HOST_EP_KEY: C 1, TS 2']);
  assert.deepEqual([EventType.AUDIT, ConfigFlag.POLICY_AUDIT], [4, 4]);
  assert.deepEqual(Object.values(HostProgram).sort(), [...btf.programs].sort());
});
