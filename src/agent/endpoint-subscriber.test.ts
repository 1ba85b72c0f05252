import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { mustParse } from '../k8s/kind.js';
import { KINDS, refOf, resourceKey, type Resource } from '../k8s/kinds.js';
import { PolicyEngine } from '../policy/index.js';
import { EndpointRegistry } from './endpoint-registry.js';
import { EndpointSubscriber } from './endpoint-subscriber.js';
import type { RemoteEndpoint } from './remote-endpoints.js';
import { podLabels } from '../identity/labels.js';
import type { ResourceEvent } from './resource-source.js';

const ev = (type: ResourceEvent['type'], object: Resource): ResourceEvent => ({ type, ref: refOf(object), key: resourceKey(refOf(object)), object, origin: 'm.yaml' });

test('pods become engine endpoints from their manifest, merged with their CNI registration', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-epsub-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const registry = new EndpointRegistry(join(dir, 'endpoints.json'));
  const engine = new PolicyEngine();
  const sub = new EndpointSubscriber(engine, registry, 'node-a');

  const pod = mustParse(KINDS.Pod, { metadata: { name: 'web', namespace: 'shop', labels: { app: 'web' } }, status: { podIP: '10.0.0.5' } });
  await sub.apply(ev('upsert', pod));
  assert.equal(engine.endpointByIp('10.0.0.5'), 'shop/web');
  assert.equal(engine.isLocalEndpoint('shop/web'), false, 'no CNI registration: not local');
  assert.deepEqual(sub.podLabels('shop/web'), { app: 'web' });

  // Registered by CNI on this node: the registration's address wins and the endpoint is local.
  registry.put({ containerId: 'c1', ifname: 'eth0', network: 'meshd', netns: '/proc/1/ns/net', hostInterface: 'veth1', podMac: null, ips: ['10.0.0.9/32'], k8s: { namespace: 'shop', name: 'web' }, chained: false, registeredAt: new Date(0).toISOString() });
  await sub.syncEndpoint('shop/web');
  assert.equal(engine.endpointByIp('10.0.0.9'), 'shop/web');
  assert.equal(engine.isLocalEndpoint('shop/web'), true);

  // The manifest goes, the registration stays: still an endpoint, without labels.
  await sub.apply(ev('delete', pod));
  assert.equal(engine.hasEndpoint('shop/web'), true);
  assert.deepEqual(sub.podLabels('shop/web'), {});

  // Remote nodes come and go; this node stays known when its Node object is deleted.
  const other = mustParse(KINDS.Node, { metadata: { name: 'node-b' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.6' }] } });
  await sub.apply(ev('upsert', other));
  assert.equal(engine.nodeByIp('192.168.1.6'), 'node-b');
  await sub.apply(ev('delete', other));
  assert.equal(engine.nodeByIp('192.168.1.6'), undefined);
  const self = mustParse(KINDS.Node, { metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.5' }] } });
  await sub.apply(ev('upsert', self));
  await sub.apply(ev('delete', self));
  assert.deepEqual(engine.nodeIdentity('node-a')?.local, true);
});

test("another node's endpoint object wins over its Pod for that pod; the Pod is the fallback; a local registration wins over both", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-epsub-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const registry = new EndpointRegistry(join(dir, 'endpoints.json'));
  const engine = new PolicyEngine();
  const objects = new Map<string, RemoteEndpoint>();
  const sub = new EndpointSubscriber(engine, registry, 'node-a', { get: (id) => objects.get(id) });

  const pod = mustParse(KINDS.Pod, { metadata: { name: 'r1', namespace: 'default', labels: { app: 'from-pod' } }, spec: { nodeName: 'node-b' }, status: { podIP: '10.99.0.5' } });
  await sub.apply(ev('upsert', pod));
  const fromPod = engine.endpointIdentity('default/r1');
  assert.ok(engine.allocator.get(fromPod ?? 0)?.labels.has('k8s', 'app'));

  // The object arrives: its labels and addresses are what the engine has.
  const labels = podLabels({ namespace: 'default', labels: { app: 'from-object' } });
  objects.set('default/r1', { id: 'default/r1', nodeName: 'node-b', identity: 0, labels, ips: ['10.99.0.6'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] });
  await sub.syncOrRemove('default/r1');
  assert.equal(engine.allocator.get(engine.endpointIdentity('default/r1') ?? 0)?.labels.key, labels.key);
  assert.equal(engine.endpointByIp('10.99.0.6'), 'default/r1');
  assert.equal(engine.endpointByIp('10.99.0.5'), undefined);
  assert.equal(engine.isLocalEndpoint('default/r1'), false);

  // A Pod update does not take over while the object is there.
  await sub.apply(ev('upsert', mustParse(KINDS.Pod, { ...pod, metadata: { ...pod.metadata, labels: { app: 'from-pod', v: '2' } } })));
  assert.equal(engine.allocator.get(engine.endpointIdentity('default/r1') ?? 0)?.labels.key, labels.key);

  // The object goes: back to the Pod.
  objects.delete('default/r1');
  await sub.syncOrRemove('default/r1');
  assert.equal(engine.endpointByIp('10.99.0.5'), 'default/r1');
  assert.ok(engine.allocator.get(engine.endpointIdentity('default/r1') ?? 0)?.labels.has('k8s', 'v'));

  // Object again, then the Pod goes: the object keeps the endpoint; both gone: no endpoint.
  objects.set('default/r1', { id: 'default/r1', nodeName: 'node-b', identity: 0, labels, ips: ['10.99.0.6'], ports: [] });
  await sub.syncOrRemove('default/r1');
  await sub.apply(ev('delete', pod));
  assert.equal(engine.endpointByIp('10.99.0.6'), 'default/r1');
  objects.delete('default/r1');
  await sub.syncOrRemove('default/r1');
  assert.equal(engine.hasEndpoint('default/r1'), false);

  // A local registration wins over an object naming the same pod.
  registry.put({ containerId: 'c2', ifname: 'eth0', network: 'meshd', netns: '/proc/1/ns/net', hostInterface: 'veth2', podMac: null, ips: ['10.0.0.7/32'], k8s: { namespace: 'default', name: 'r1' }, chained: false, registeredAt: new Date(0).toISOString() });
  objects.set('default/r1', { id: 'default/r1', nodeName: 'node-b', identity: 0, labels, ips: ['10.99.0.6'], ports: [] });
  await sub.syncOrRemove('default/r1');
  assert.equal(engine.isLocalEndpoint('default/r1'), true);
  assert.equal(engine.endpointByIp('10.0.0.7'), 'default/r1');
});

test('a pod manifest names its workload from its controlling owner (for flows)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-epsub-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sub = new EndpointSubscriber(new PolicyEngine(), new EndpointRegistry(join(dir, 'endpoints.json')), 'node-a');
  const pod = mustParse(KINDS.Pod, {
    metadata: { name: 'api-7d9f8c6b5-x2k4q', namespace: 'shop', labels: { app: 'api', 'pod-template-hash': '7d9f8c6b5' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'api-7d9f8c6b5', uid: 'u1', controller: true }] },
    status: { podIP: '10.0.0.7' },
  });
  await sub.apply(ev('upsert', pod));
  assert.deepEqual(sub.podWorkload('shop/api-7d9f8c6b5-x2k4q'), { kind: 'Deployment', name: 'api' });
  assert.equal(sub.podWorkload('shop/other'), undefined);
});
