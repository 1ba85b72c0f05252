import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import type { StateFileCorruptError } from '../util/state-file.js';
import { AttachmentStore, type AttachmentRecord } from './attachment-store.js';

const record = (containerId: string): AttachmentRecord => ({
  containerId,
  ifname: 'eth0',
  network: 'meshd',
  netns: `/var/run/netns/${containerId}`,
  hostInterface: null,
  podMac: null,
  ips: ['10.244.0.2/32'],
  ipam: 'meshd',
  pool: '10.244.0.0/24',
  chained: false,
  createdAt: '2026-01-01T00:00:00.000Z',
});

test('a damaged attachment record is reported, moved aside and reads as absent; the others are still listed', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-attach-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const reports: StateFileCorruptError[] = [];
  const store = new AttachmentStore(dir, 'meshd', { onCorrupt: (e) => reports.push(e) });
  store.write(record('good'));
  store.write(record('bad'));
  assert.deepEqual(store.read({ containerId: 'bad', ifname: 'eth0' }), record('bad'));
  const badFile = join(store.dir, 'bad@eth0.json');
  writeFileSync(badFile, '{"containerId": "bad", "ifna');

  assert.deepEqual(store.list().map((r) => r.containerId), ['good']);
  assert.equal(reports.length, 1);
  const [r] = reports;
  assert.ok(isMeshdError(r, 'MESHD_STATE_FILE_CORRUPT'));
  assert.ok(r.message.includes(badFile), 'names the file');
  assert.equal(readFileSync(r.movedTo, 'utf8'), '{"containerId": "bad", "ifna');
  assert.equal(store.read({ containerId: 'bad', ifname: 'eth0' }), undefined);
  assert.deepEqual(readdirSync(store.dir).filter((n) => n.includes('.corrupt-')).length, 1);
  assert.equal(reports.length, 1, 'moved aside once');
});
