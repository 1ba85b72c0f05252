import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LocalIdentityAllocator } from '../identity/allocator.js';
import { podLabels } from '../identity/labels.js';
import { loadPolicyText } from './api/loader.js';
import { PolicyEngine } from './engine.js';

test('an identity the allocator learns outside any mutation (another node allocated it) is announced, and the next flush allows it', async () => {
  const allocator = new LocalIdentityAllocator();
  const engine = new PolicyEngine({ allocator });
  await engine.upsertEndpoint({ namespace: 'default', name: 'web', labels: { app: 'web' }, ips: ['10.0.0.5'] });
  const r = loadPolicyText(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: from-remote, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: remote}}]}]
`);
  const doc = r.policies[0]?.document;
  assert.ok(doc);
  await engine.upsertPolicy(doc);
  engine.flush();
  let heard = 0;
  const off = engine.onIdentitiesChanged(() => heard++);

  // An unrelated identity: no selector changes, nothing announced.
  await allocator.allocate(podLabels({ namespace: 'default', labels: { app: 'other' } }));
  assert.equal(heard, 0);

  // What a cluster allocator's watch does when another node allocates a label set: the identity appears.
  const remote = await allocator.allocate(podLabels({ namespace: 'default', labels: { app: 'remote' } }));
  assert.ok(heard > 0, 'the engine announced the change');
  const changed = engine.flush();
  const web = changed.find((p) => p.endpointId === 'default/web');
  assert.ok(web, "web's policy changed without any engine mutation");
  assert.ok(web.ingress.entries.some((e) => e.remoteIdentity === remote.id), 'the new identity is allowed');

  // Unsubscribed: heard no more.
  off();
  const before = heard;
  await allocator.allocate(podLabels({ namespace: 'default', labels: { app: 'remote', v: '2' } }));
  assert.equal(heard, before);
});
