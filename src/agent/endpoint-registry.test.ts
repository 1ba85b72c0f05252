import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Endpoint } from '../cni/endpoint-api.js';
import { isMeshdError } from '../util/errors.js';
import { errno } from '../util/fs-errors.js';
import type { StateFileCorruptError } from '../util/state-file.js';
import { EndpointRegistry } from './endpoint-registry.js';

function stateDir(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'meshd-registry-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const endpoint = (containerId: string): Endpoint => ({
  containerId,
  ifname: 'eth0',
  network: 'meshd',
  netns: `/var/run/netns/${containerId}`,
  hostInterface: `lxc${containerId}`,
  podMac: null,
  ips: ['10.244.0.2/32'],
  k8s: { namespace: 'default', name: containerId },
  chained: false,
  registeredAt: '2026-01-01T00:00:00.000Z',
});

function open(file: string): { reg: EndpointRegistry; reports: StateFileCorruptError[] } {
  const reports: StateFileCorruptError[] = [];
  return { reg: new EndpointRegistry(file, { onCorrupt: (e) => reports.push(e) }), reports };
}

const asideOf = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('endpoints.json.corrupt-'));

test('the registry survives a restart; a missing file is an empty registry', (t) => {
  const file = join(stateDir(t), 'endpoints.json');
  const a = open(file);
  assert.deepEqual(a.reg.all(), []);
  a.reg.put(endpoint('c1'));
  a.reg.put(endpoint('c2'));
  a.reg.delete({ containerId: 'c1', ifname: 'eth0' });
  const b = open(file);
  assert.deepEqual(b.reg.all().map((e) => e.containerId), ['c2']);
  assert.equal(b.reg.byEndpointId('default/c2')?.containerId, 'c2');
  assert.deepEqual([...a.reports, ...b.reports], []);
});

test('a half-written registry is reported with its path, moved aside, and the registry starts empty and usable', (t) => {
  const dir = stateDir(t);
  const file = join(dir, 'endpoints.json');
  const garbage = '{"version": 1, "endpoints": [{"containerId": "c1", "ifn';
  writeFileSync(file, garbage);
  const { reg, reports } = open(file);
  assert.equal(reports.length, 1);
  const [r] = reports;
  assert.ok(isMeshdError(r, 'MESHD_STATE_FILE_CORRUPT'));
  assert.equal(r.file, file);
  assert.ok(r.message.includes(file) && r.message.includes(r.movedTo), 'the report names both paths');
  assert.deepEqual(asideOf(dir), [r.movedTo.slice(dir.length + 1)]);
  assert.equal(readFileSync(r.movedTo, 'utf8'), garbage, 'the damaged content is kept for the operator');
  assert.deepEqual(reg.all(), []);
  reg.put(endpoint('c3'));
  const again = open(file);
  assert.deepEqual(again.reports, [], 'the next start reads a good file');
  assert.deepEqual(again.reg.all().map((e) => e.containerId), ['c3']);
});

test('a registry with one damaged entry keeps the others', (t) => {
  const dir = stateDir(t);
  const file = join(dir, 'endpoints.json');
  const bad = { ...endpoint('c2'), ips: 'not a list' };
  writeFileSync(file, JSON.stringify({ version: 1, endpoints: [endpoint('c1'), bad, endpoint('c3')] }));
  const { reg, reports } = open(file);
  assert.equal(reports.length, 1);
  assert.ok(isMeshdError(reports[0], 'MESHD_STATE_FILE_CORRUPT'));
  assert.ok(reports[0]?.message.includes('endpoints.1.ips'), 'the report names the damaged field');
  assert.deepEqual(reg.all().map((e) => e.containerId), ['c1', 'c3']);
  assert.equal(asideOf(dir).length, 1);
  assert.deepEqual(open(file).reg.all().map((e) => e.containerId), ['c1', 'c3'], 'the salvaged entries were written back');
});

test('a registry that cannot be read for another reason is an error, and nothing is moved', (t) => {
  const dir = stateDir(t);
  const file = join(dir, 'endpoints.json');
  mkdirSync(file); // unreadable as a file, for root too
  assert.throws(() => open(file), (e: unknown) => errno(e) === 'EISDIR');
  assert.ok(statSync(file).isDirectory());
  assert.deepEqual(asideOf(dir), []);
});
