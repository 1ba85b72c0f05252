import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import { ReservedIdentity } from '../identity/reserved.js';
import { abiEnums, Dir, DROP_REASON_MAX, DropReason, Identity, Mark, Metric, MetricSlot, proxyUpstreamMark } from './abi.js';

// The values themselves are checked against the compiled objects by
// test/integration/bpf-abi.test.ts; these are the TypeScript-side rules.

test('each C enum has one table, and tables of codes never give two names one number', () => {
  assert.equal(new Set(abiEnums.map((e) => e.cName)).size, abiEnums.length);
  for (const e of abiEnums.filter((x) => x.cName !== 'meshd_mark' && x.cName !== 'meshd_metric')) {
    const values = Object.values(e.values);
    assert.equal(new Set(values).size, values.length, e.cName);
  }
});

test('the reserved identities the datapath names are numbered as the identity allocator numbers them', () => {
  assert.deepEqual(
    { host: Identity.HOST, world: Identity.WORLD, 'remote-node': Identity.REMOTE_NODE },
    { host: ReservedIdentity.host, world: ReservedIdentity.world, 'remote-node': ReservedIdentity['remote-node'] },
  );
});

test('metric slots: every drop reason has its own slot per direction, below the connection counters', () => {
  assert.ok(DROP_REASON_MAX <= Metric.REASONS);
  const slots = new Set<number>();
  for (const dir of [Dir.INGRESS, Dir.EGRESS]) {
    for (const reason of Object.values(DropReason)) slots.add(Metric.drop(dir, reason));
    slots.add(Metric.newAllowed(dir));
    slots.add(Metric.newRedirected(dir));
  }
  assert.equal(slots.size, 2 * (Object.keys(DropReason).length + 2));
  assert.ok(Math.max(...slots) < MetricSlot.MAX);
  assert.ok(Metric.drop(Dir.EGRESS, DROP_REASON_MAX - 1) < MetricSlot.NEW_ALLOWED_BASE);
});

test('the proxy upstream mark carries a 24-bit identity beside the identity magic, which the proxy magic does not share', () => {
  const mark = proxyUpstreamMark(0x123456);
  assert.equal(mark, 0x3456_0a12);
  assert.equal(mark & Mark.MAGIC_MASK, Mark.MAGIC_IDENTITY);
  // bpf/lxc.c meshd_identity_from_mark
  assert.equal(((mark >>> Mark.IDENTITY_SHIFT) | ((mark & Mark.IDENTITY_HIGH_MASK) << Mark.IDENTITY_SHIFT)) >>> 0, 0x123456);
  assert.notEqual(Mark.MAGIC_PROXY & Mark.MAGIC_MASK, Mark.MAGIC_IDENTITY);
  assert.throws(() => proxyUpstreamMark(0x1000000), (e) => isMeshdError(e, 'MESHD_MARK_IDENTITY_RANGE'));
  assert.throws(() => proxyUpstreamMark(-1), (e) => isMeshdError(e, 'MESHD_MARK_IDENTITY_RANGE'));
});
