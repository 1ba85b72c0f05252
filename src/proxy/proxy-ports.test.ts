import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import type { StateFileCorruptError } from '../util/state-file.js';
import { ProxyPorts } from './proxy-ports.js';

test('proxy ports are allocated once per protocol and direction and survive a restart', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-ports-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stateFile = join(dir, 'proxy-ports.json');
  const a = ProxyPorts.open({ stateFile, range: [10000, 10010] });
  const hi = a.portFor('http', 'ingress');
  const he = a.portFor('http', 'egress');
  assert.equal(a.portFor('http', 'ingress'), hi);
  assert.notEqual(hi, he);
  const b = ProxyPorts.open({ stateFile, range: [10000, 10010] });
  assert.equal(b.portFor('http', 'egress'), he);
  assert.equal(b.portFor('http', 'ingress'), hi);
  assert.deepEqual(b.list().map((x) => x.key).sort(), ['http-egress', 'http-ingress']);
});

test('an exhausted or invalid range is an error with a stable code', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-ports-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const p = ProxyPorts.open({ stateFile: join(dir, 's.json'), range: [20000, 20000] });
  p.portFor('http', 'ingress');
  assert.throws(() => p.portFor('http', 'egress'), (e: unknown) => isMeshdError(e, 'MESHD_PROXY_PORT_RANGE_EXHAUSTED'));
  assert.throws(
    () => ProxyPorts.open({ stateFile: join(dir, 's.json'), range: [5, 1] }),
    (e: unknown) => isMeshdError(e, 'MESHD_PROXY_PORT_RANGE_INVALID') && e.message.includes('proxy.portRange'),
  );
});

function openReporting(stateFile: string, range: readonly [number, number]): { ports: ProxyPorts; reports: StateFileCorruptError[] } {
  const reports: StateFileCorruptError[] = [];
  return { ports: ProxyPorts.open({ stateFile, range, onCorrupt: (e) => reports.push(e) }), reports };
}

test('a state file that is not JSON is reported with its path, moved aside, and allocation starts afresh', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-ports-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stateFile = join(dir, 'proxy-ports.json');
  writeFileSync(stateFile, '{"version": 1, "ports": {"http-ingr');
  const { ports, reports } = openReporting(stateFile, [10000, 10010]);
  assert.equal(reports.length, 1);
  const [r] = reports;
  assert.ok(isMeshdError(r, 'MESHD_STATE_FILE_CORRUPT'));
  assert.ok(r.message.includes(stateFile), 'names the file');
  assert.equal(readFileSync(r.movedTo, 'utf8'), '{"version": 1, "ports": {"http-ingr');
  assert.deepEqual(ports.list(), []);
  assert.equal(ports.portFor('http', 'ingress'), 10000);
  assert.deepEqual(openReporting(stateFile, [10000, 10010]).reports, [], 'the next start reads a good file');
});

test('a state file with a damaged entry keeps the good ones, so their listeners do not move', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-ports-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stateFile = join(dir, 'proxy-ports.json');
  writeFileSync(stateFile, JSON.stringify({ version: 1, ports: { 'http-ingress': 70000, 'http-egress': 10004 } }));
  const { ports, reports } = openReporting(stateFile, [10000, 10010]);
  assert.equal(reports.length, 1);
  assert.ok(isMeshdError(reports[0], 'MESHD_STATE_FILE_CORRUPT'));
  assert.ok(reports[0]?.message.includes('ports.http-ingress'), 'names the damaged entry');
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('proxy-ports.json.corrupt-')).length, 1);
  assert.equal(ports.portFor('http', 'egress'), 10004);
  assert.equal(ports.portFor('http', 'ingress'), 10000);
  const again = openReporting(stateFile, [10000, 10010]);
  assert.deepEqual(again.reports, []);
  assert.deepEqual(again.ports.list(), [
    { key: 'http-ingress', port: 10000 },
    { key: 'http-egress', port: 10004 },
  ]);
});
