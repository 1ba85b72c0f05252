import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import { LocalIdentityAllocator } from './allocator.js';
import { cidrIdentityLabels, parsePrefix } from './cidr.js';
import { LabelSet, parseSelectorKey, podLabels } from './labels.js';
import { CLUSTER_IDENTITY_MIN, LOCAL_IDENTITY_MIN, ReservedIdentity } from './reserved.js';

test('reserved identities are numbered as Cilium numbers them', () => {
  assert.deepEqual(ReservedIdentity, { host: 1, world: 2, unmanaged: 3, health: 4, init: 5, 'remote-node': 6, 'kube-apiserver': 7, ingress: 8 });
  const a = new LocalIdentityAllocator();
  assert.ok(a.get(1)?.labels.has('reserved', 'host'));
  assert.ok(a.get(6)?.labels.has('reserved', 'remote-node'));
});

test('the same label set gets the same identity regardless of order; a different set another one', async () => {
  const a = new LocalIdentityAllocator();
  const x = await a.allocate(podLabels({ namespace: 'default', labels: { app: 'web', tier: 'fe' } }));
  const y = await a.allocate(podLabels({ namespace: 'default', labels: { tier: 'fe', app: 'web' } }));
  const z = await a.allocate(podLabels({ namespace: 'other', labels: { app: 'web', tier: 'fe' } }));
  assert.equal(x.id, y.id);
  assert.equal(x.id, CLUSTER_IDENTITY_MIN);
  assert.notEqual(z.id, x.id);
  assert.equal(x.scope, 'cluster');
});

test('identities are reference counted and removal is announced', async () => {
  const a = new LocalIdentityAllocator();
  const events: string[] = [];
  a.subscribe(({ kind, identity }) => events.push(`${kind}:${identity.id}`));
  const l = podLabels({ namespace: 'default', labels: { app: 'a' } });
  const one = await a.allocate(l);
  await a.allocate(l);
  assert.equal(a.release(one.id), false);
  assert.equal(a.release(one.id), true);
  assert.equal(a.get(one.id), undefined);
  assert.deepEqual(events, [`added:${one.id}`, `removed:${one.id}`]);
  assert.equal(a.release(ReservedIdentity.world), false);
});

test('CIDR identities live in the local scope and carry every enclosing prefix plus world', async () => {
  const a = new LocalIdentityAllocator();
  const p = parsePrefix('10.1.2.3/16');
  assert.ok(p);
  assert.equal(p.addr, '10.1.0.0');
  const id = await a.allocate(LabelSet.from(cidrIdentityLabels(p)));
  assert.equal(id.id, LOCAL_IDENTITY_MIN);
  assert.equal(id.scope, 'local');
  assert.ok(id.labels.has('cidr', '10.1.0.0/16'));
  assert.ok(id.labels.has('cidr', '10.0.0.0/8'));
  assert.ok(id.labels.has('cidr', '0.0.0.0/0'));
  assert.ok(!id.labels.has('cidr', '10.1.0.0/17'));
  assert.ok(id.labels.has('reserved', 'world'));
  assert.equal(parsePrefix('10.0.0.1/33'), undefined);
  assert.equal(parsePrefix('10'), undefined);
  assert.equal(parsePrefix('2001:db8::1/32')?.addr, '2001:db8::');
});

test('pod labels include the namespace, namespace labels and cluster as Cilium adds them', () => {
  const l = podLabels({ namespace: 'shop', labels: { app: 'api' }, namespaceLabels: { team: 'a' }, serviceAccount: 'sa' });
  assert.deepEqual(l.toStrings(), [
    'k8s:app=api',
    'k8s:io.cilium.k8s.namespace.labels.team=a',
    'k8s:io.cilium.k8s.policy.cluster=default',
    'k8s:io.cilium.k8s.policy.serviceaccount=sa',
    'k8s:io.kubernetes.pod.namespace=shop',
  ]);
  assert.deepEqual(parseSelectorKey('k8s:io.kubernetes.pod.namespace'), { source: 'k8s', key: 'io.kubernetes.pod.namespace' });
  assert.deepEqual(parseSelectorKey('app'), { source: 'any', key: 'app' });
  assert.deepEqual(parseSelectorKey('any:app'), { source: 'any', key: 'app' });
  assert.deepEqual(parseSelectorKey('reserved:host'), { source: 'reserved', key: 'host' });
  assert.deepEqual(parseSelectorKey('example.com/role:x'), { source: 'any', key: 'example.com/role:x' });
});

test('an exhausted number space rejects with a code, takes no reference and announces nothing; a release makes room', async () => {
  const a = new LocalIdentityAllocator();
  const app = (i: number): LabelSet => podLabels({ namespace: 'default', labels: { app: `a${i}` } });
  let last = 0;
  for (let i = 0; last < 0xffff; i++) last = (await a.allocate(app(i))).id;
  const heard: number[] = [];
  a.subscribe(({ identity }) => heard.push(identity.id));
  await assert.rejects(a.allocate(app(-1)), (e) => isMeshdError(e, 'MESHD_IDENTITY_ALLOCATION'));
  assert.deepEqual(heard, []);
  assert.equal(a.release(last), true);
  assert.equal((await a.allocate(app(-1))).id, last, 'the released number is reused');
});
