import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mustParse } from '../k8s/kind.js';
import { ciliumCidrGroup } from '../k8s/cilium-cidr-group.js';
import { loadPolicyText } from '../policy/api/loader.js';
import { PolicyEngine } from '../policy/engine.js';
import { lookupEntries } from '../policy/lookup.js';
import { Proto } from '../policy/types.js';
import { CidrGroupSubscriber } from './cidr-group-subscriber.js';

test('CiliumCIDRGroup events reach the engine: the policy naming the group follows upsert and delete', async () => {
  const engine = new PolicyEngine();
  await engine.upsertEndpoint({ namespace: 'default', name: 'app', labels: { app: 'app' }, ips: ['10.0.0.1'] });
  const r = loadPolicyText('apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: default}\nspec: {endpointSelector: {matchLabels: {app: app}}, egress: [{toCIDRSet: [{cidrGroupRef: g}]}]}\n');
  const doc = r.policies[0]?.document;
  assert.ok(doc);
  await engine.upsertPolicy(doc);
  const sub = new CidrGroupSubscriber(engine);
  const object = mustParse(ciliumCidrGroup, { apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: { name: 'g' }, spec: { externalCIDRs: ['192.0.2.0/24'] } });
  const ev = { ref: { kind: 'CiliumCIDRGroup' as const, name: 'g' }, key: 'CiliumCIDRGroup/g', object, origin: 'test' };
  const verdict = (): string => {
    engine.flush();
    const pol = engine.endpointPolicy('default/app');
    assert.ok(pol);
    return lookupEntries(pol.egress, engine.identityOfIp('192.0.2.9'), Proto.TCP, 443).verdict;
  };
  assert.equal(verdict(), 'DENY');
  await sub.apply({ ...ev, type: 'upsert' });
  assert.equal(verdict(), 'ALLOW');
  await sub.apply({ ...ev, type: 'delete' });
  assert.equal(verdict(), 'DENY');
});
