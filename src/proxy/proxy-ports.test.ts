import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ProxyPortError, ProxyPorts } from './proxy-ports.js';

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

test('an exhausted range and a corrupt state file are errors with stable codes', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-ports-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const p = ProxyPorts.open({ stateFile: join(dir, 's.json'), range: [20000, 20000] });
  p.portFor('http', 'ingress');
  assert.throws(() => p.portFor('http', 'egress'), (e: unknown) => e instanceof ProxyPortError && e.code === 'PROXY_PORT_RANGE_EXHAUSTED');
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ version: 1, ports: { 'http-ingress': 70000 } }));
  assert.throws(
    () => ProxyPorts.open({ stateFile: bad, range: [1, 2] }),
    (e: unknown) => e instanceof ProxyPortError && e.code === 'PROXY_PORT_STATE_INVALID' && e.message.includes('ports.http-ingress'),
  );
  assert.throws(() => ProxyPorts.open({ stateFile: bad, range: [5, 1] }), /proxy\.portRange/);
});
