import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mustParse } from '../k8s/kind.js';
import { KINDS, refOf, resourceKey, type Resource } from '../k8s/kinds.js';
import { PolicyEngine } from '../policy/index.js';
import { ServiceSubscriber } from './service-subscriber.js';
import type { ResourceEvent } from './resource-source.js';

const ev = (type: ResourceEvent['type'], object: Resource): ResourceEvent => ({ type, ref: refOf(object), key: resourceKey(refOf(object)), object, origin: 'k8s' });

const slice = (name: string, namespace: string, service: string, addresses: string[]): Resource =>
  mustParse(KINDS.EndpointSlice, {
    metadata: { name, namespace, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: addresses.map((a) => ({ addresses: [a] })),
    ports: [{ name: 'https', port: 6443, protocol: 'TCP' }],
  });

test('the kubernetes Service\'s slices in default are the API server\'s addresses; other slices are not', async () => {
  const engine = new PolicyEngine();
  const sub = new ServiceSubscriber(engine, null);
  await sub.apply(ev('upsert', slice('kubernetes', 'default', 'kubernetes', ['192.0.2.1'])));
  await sub.apply(ev('upsert', slice('kubernetes-2', 'default', 'kubernetes', ['192.0.2.2'])));
  await sub.apply(ev('upsert', slice('kubernetes', 'other', 'kubernetes', ['192.0.2.3'])));
  await sub.apply(ev('upsert', slice('web-1', 'default', 'web', ['192.0.2.4'])));
  assert.deepEqual(engine.kubeApiServerAddresses(), ['192.0.2.1', '192.0.2.2']);
  assert.equal(engine.identityOfIp('192.0.2.1'), 7);
  assert.equal(engine.identityOfIp('192.0.2.3'), 2);
  // A slice relabelled away from the Service stops counting; a deleted one too.
  await sub.apply(ev('upsert', slice('kubernetes-2', 'default', 'web', ['192.0.2.2'])));
  assert.deepEqual(engine.kubeApiServerAddresses(), ['192.0.2.1']);
  await sub.apply(ev('delete', slice('kubernetes', 'default', 'kubernetes', ['192.0.2.1'])));
  assert.deepEqual(engine.kubeApiServerAddresses(), []);
  assert.equal(engine.identityOfIp('192.0.2.1'), 2);
});
