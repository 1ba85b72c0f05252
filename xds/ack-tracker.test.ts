import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AckTracker, type ResponseInfo } from './ack-tracker.js';
import { XdsError, isXdsError } from './errors.js';

const node = { id: 'n1', cluster: 'c' };
const info = (version: string, seq: number): ResponseInfo => ({ version, snapshotVersion: version, seq, complete: true, nonce: String(seq), resources: 1, at: new Date() });

test('AckTracker: status shows last sent, ACKed and NACKed per type, and open streams', () => {
  const t = new AckTracker();
  t.streamOpened(node);
  t.sent(node, 'listeners', info('v1', 1));
  t.acked(node, 'listeners', info('v1', 1));
  t.sent(node, 'listeners', info('v2', 2));
  assert.equal(t.nacked(node, 'listeners', info('v2', 2), 'bad listener'), true, 'first NACK is news');
  assert.equal(t.nacked(node, 'listeners', info('v2', 2), 'bad listener'), false, 'the same NACK again is not');
  assert.equal(t.nacked(node, 'listeners', info('v2', 2), 'other reason'), true);
  const s = t.status('n1');
  assert.equal(s?.streams, 1);
  assert.equal(s?.types.listeners?.sent?.version, 'v2');
  assert.equal(s?.types.listeners?.acked?.version, 'v1');
  assert.equal(s?.types.listeners?.nacked?.message, 'other reason');
  t.streamClosed(node);
  assert.equal(t.allStatus()[0]?.streams, 0);
  assert.equal(t.status('nobody'), undefined);
});

test('AckTracker.waitFor: resolves when the condition holds, rejects with the condition\'s error, times out', async () => {
  const t = new AckTracker();
  const acked = t.waitFor('n1', (s) => s.types.clusters?.acked?.version === 'v1');
  const failed = t.waitFor('n1', (s) => (s.types.clusters?.nacked ? new XdsError('MESHD_XDS_NACKED', s.types.clusters.nacked.message) : false));
  t.acked(node, 'clusters', info('v1', 1));
  await acked;
  t.nacked(node, 'clusters', info('v2', 2), 'nope');
  await assert.rejects(failed, (e: unknown) => isXdsError(e, 'MESHD_XDS_NACKED') && e.message === 'nope');
  await assert.rejects(
    t.waitFor('n1', () => false, { timeoutMs: 20 }),
    (e: unknown) => isXdsError(e, 'MESHD_XDS_ACK_TIMEOUT'),
  );
});

test('AckTracker.forget: a node gone for good leaves the table; a closed stream alone does not', () => {
  const t = new AckTracker();
  const other = { id: 'n2', cluster: 'c' };
  for (const n of [node, other]) {
    t.streamOpened(n);
    t.acked(n, 'listeners', info('v1', 1));
    t.streamClosed(n);
  }
  assert.equal(t.size, 2, 'closed streams keep their ACKs (a reconnecting node needs them)');
  t.forget('n1');
  assert.equal(t.size, 1);
  assert.equal(t.status('n1'), undefined);
  assert.equal(t.status('n2')?.types.listeners?.acked?.version, 'v1');
});
