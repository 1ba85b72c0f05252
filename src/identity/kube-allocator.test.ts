import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../k8s/client.js';
import { isMeshdError } from '../util/errors.js';
import { identityKeyName, identityNumber, identityOf, KubeIdentityAllocator, parseLabel } from './kube-allocator.js';
import { formatLabel, LabelSet, podLabels } from './labels.js';
import { LOCAL_IDENTITY_MIN, ReservedIdentity, reservedLabel } from './reserved.js';

/** A client for a loopback port nothing listens on: every request is refused at once. */
async function refusedClient(): Promise<KubeClient> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const addr = srv.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  await new Promise((r) => srv.close(r));
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }, { name: 'u' });
  return new KubeClient(kc);
}

test('the key name of a label set is its canonical form hashed: order-independent, distinct per set, a valid object name', () => {
  const a = LabelSet.from([
    { source: 'k8s', key: 'app', value: 'web' },
    { source: 'k8s', key: 'tier', value: 'front' },
  ]);
  const b = LabelSet.from([
    { source: 'k8s', key: 'tier', value: 'front' },
    { source: 'k8s', key: 'app', value: 'web' },
  ]);
  assert.equal(identityKeyName(a), identityKeyName(b));
  assert.notEqual(identityKeyName(a), identityKeyName(LabelSet.from([{ source: 'k8s', key: 'app', value: 'web' }])));
  assert.match(identityKeyName(a), /^[0-9a-f]{40}$/);
});

test('labels survive the trip through the store, values with = and : included', () => {
  const set = LabelSet.from([
    { source: 'k8s', key: 'io.kubernetes.pod.namespace', value: 'default' },
    { source: 'k8s', key: 'url', value: 'a=b:c' },
    { source: 'k8s', key: 'flag', value: '' },
  ]);
  const back = set.labels.map(formatLabel).map(parseLabel);
  assert.deepEqual(back, set.labels);
  assert.equal(parseLabel('no-source'), undefined);
  assert.equal(parseLabel('k8s:=v'), undefined);
});

test('only names in the cluster range are identity numbers, and an object whose labels do not hash to its key is refused', () => {
  assert.equal(identityNumber('256'), 256);
  assert.equal(identityNumber('65535'), 65535);
  for (const bad of ['255', '65536', '0256', 'abc', '']) assert.equal(identityNumber(bad), undefined, bad);
  const set = podLabels({ namespace: 'default', labels: { app: 'web' } });
  const labels = set.labels.map(formatLabel);
  const ok = identityOf({ metadata: { name: '300' }, spec: { labels, key: identityKeyName(set) } });
  assert.equal(ok?.id, 300);
  assert.equal(ok?.labels.key, set.key);
  assert.equal(identityOf({ metadata: { name: '300' }, spec: { labels, key: 'someone-else' } }), undefined);
});

test('without an API server: reserved and CIDR identities stay local and work, a new cluster label set is refused with a coded error', async () => {
  const alloc = new KubeIdentityAllocator({ client: await refusedClient(), nodeName: 'n1', attempts: 1 });
  const world = await alloc.allocate(LabelSet.from([reservedLabel('world'), { source: 'cidr', key: '0.0.0.0/0', value: '' }, { source: 'cidr', key: '::/0', value: '' }]));
  assert.equal(world.id, ReservedIdentity.world);
  const cidr = await alloc.allocate(LabelSet.from([{ source: 'cidr', key: '10.0.0.0/8', value: '' }]));
  assert.equal(cidr.scope, 'local');
  assert.ok(cidr.id >= LOCAL_IDENTITY_MIN);
  assert.equal(alloc.get(cidr.id)?.labels.key, cidr.labels.key);
  await assert.rejects(alloc.allocate(podLabels({ namespace: 'default', labels: { app: 'web' } })), (e) => isMeshdError(e, 'MESHD_IDENTITY_ALLOCATION') && e.kind === 'unavailable');
  assert.equal(alloc.release(cidr.id), true);
  assert.equal(alloc.get(cidr.id), undefined);
  const host = alloc.setReservedLabels('host', [{ source: 'k8s', key: 'node', value: 'n1' }]);
  assert.equal(alloc.get(ReservedIdentity.host), host);
  await alloc.stop();
});
