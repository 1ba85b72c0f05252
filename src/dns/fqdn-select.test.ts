/**
 * Which learned names get identities: as in Cilium, only the addresses of
 * names some toFQDNs selector in force matches. A name no selector matches
 * stays in the FQDN cache (a selector added later finds it) but holds no
 * identity and no ipcache entry; a policy that starts selecting it allocates
 * them before it is installed, one that stops gives them back. Flushing the
 * cache by hand (`meshd fqdn cache flush`) removes entries by endpoint and
 * name, keeping addresses a connection still uses until they are unused.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LocalIdentityAllocator } from '../identity/allocator.js';
import type { LabelSet } from '../identity/labels.js';
import { loadPolicyText } from '../policy/api/loader.js';
import { FqdnCache } from '../policy/dns-cache.js';
import { PolicyEngine } from '../policy/engine.js';
import { lookupEntries } from '../policy/lookup.js';
import { Proto } from '../policy/types.js';
import { isMeshdError, MeshdError } from '../util/errors.js';

const WORLD = 2;

function policy(name: string, fqdns: string): ReturnType<typeof loadPolicyText>['policies'][number]['document'] {
  const loaded = loadPolicyText(
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: app}}
  egress:
    - toFQDNs: [${fqdns}]
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`,
    `${name}.yaml`,
  );
  assert.deepEqual(loaded.problems, []);
  const doc = loaded.policies[0]?.document;
  assert.ok(doc);
  return doc;
}

class RefusingAllocator extends LocalIdentityAllocator {
  refuse = false;
  override allocate(labels: LabelSet): ReturnType<LocalIdentityAllocator['allocate']> {
    if (this.refuse) return Promise.reject(new MeshdError('MESHD_IDENTITY_ALLOCATION', 'refused by the test', { kind: 'unavailable' }));
    return super.allocate(labels);
  }
}

async function world(): Promise<{ e: PolicyEngine; cache: FqdnCache; alloc: RefusingAllocator }> {
  const cache = new FqdnCache({ minTtlSeconds: 0 });
  const alloc = new RefusingAllocator();
  const e = new PolicyEngine({ dns: cache, allocator: alloc });
  await e.upsertEndpoint({ namespace: 'default', name: 'app', labels: { app: 'app' }, ips: ['10.0.0.1'] });
  await e.upsertPolicy(policy('gh', '{matchName: api.github.com}'));
  e.flush();
  return { e, cache, alloc };
}

const inIpcache = (e: PolicyEngine, ip: string): boolean => e.ipcache().some((c) => c.prefix === `${ip}/32`);
const verdict443 = (e: PolicyEngine, ip: string): string => {
  const eg = e.endpointPolicy('default/app')?.egress;
  assert.ok(eg);
  return lookupEntries(eg, e.identityOfIp(ip), Proto.TCP, 443).verdict;
};

test('only names a toFQDNs selector matches get identities; a selector added later picks up names learned before it', async () => {
  const { e, cache } = await world();
  assert.equal(cache.observe('default/app', 'api.github.com', ['192.0.2.1'], 60), true);
  assert.equal(cache.observe('default/app', 'other.example.org', ['192.0.2.9'], 60), true);
  assert.equal(e.selectsName('api.github.com'), true);
  assert.equal(e.selectsName('other.example.org'), false);
  await e.settled();
  e.flush();
  assert.notEqual(e.identityOfIp('192.0.2.1'), WORLD);
  assert.ok(inIpcache(e, '192.0.2.1'));
  assert.equal(verdict443(e, '192.0.2.1'), 'ALLOW');
  // The answer of a name no selector matches: in the cache, but no identity, no ipcache entry.
  assert.deepEqual(cache.lookup('other.example.org'), ['192.0.2.9']);
  assert.equal(e.identityOfIp('192.0.2.9'), WORLD);
  assert.ok(!inIpcache(e, '192.0.2.9'), JSON.stringify(e.ipcache()));
  const local = () => [...e.allocator.all()].filter((i) => i.scope === 'local').length;
  assert.equal(local(), 1, 'one CIDR identity: the selected address only');

  // A policy selecting it arrives: the address gets its identity in the same step, the port opens.
  await e.upsertPolicy(policy('org', '{matchPattern: "*.example.org"}'));
  e.flush();
  assert.notEqual(e.identityOfIp('192.0.2.9'), WORLD);
  assert.ok(inIpcache(e, '192.0.2.9'));
  assert.equal(verdict443(e, '192.0.2.9'), 'ALLOW');
  assert.equal(local(), 2);

  // And goes: the identity and the ipcache entry go with it; the cache keeps the name.
  assert.equal(await e.removePolicy('CiliumNetworkPolicy/default/org'), true);
  e.flush();
  assert.equal(e.identityOfIp('192.0.2.9'), WORLD);
  assert.ok(!inIpcache(e, '192.0.2.9'));
  assert.equal(verdict443(e, '192.0.2.9'), 'DENY');
  assert.deepEqual(cache.lookup('other.example.org'), ['192.0.2.9']);
  assert.equal(local(), 1);
  assert.notEqual(e.identityOfIp('192.0.2.1'), WORLD, 'the other name keeps its identity');
});

test('a policy whose newly selected names get no identity is not installed (all or none)', async () => {
  const { e, cache, alloc } = await world();
  cache.observe('default/app', 'other.example.org', ['192.0.2.9'], 60);
  await e.settled();
  alloc.refuse = true;
  await assert.rejects(e.upsertPolicy(policy('org', '{matchPattern: "*.example.org"}')), (err) => isMeshdError(err, 'MESHD_IDENTITY_ALLOCATION'));
  assert.deepEqual(e.policyKeys(), ['CiliumNetworkPolicy/default/gh']);
  assert.equal(e.selectsName('other.example.org'), false);
  alloc.refuse = false;
  await e.upsertPolicy(policy('org', '{matchPattern: "*.example.org"}'));
  e.flush();
  assert.equal(verdict443(e, '192.0.2.9'), 'ALLOW');
});

test('flush by name, by pattern, by endpoint; an address in use expires instead of going', async () => {
  const { e, cache } = await world();
  await e.upsertEndpoint({ namespace: 'default', name: 'b', labels: { app: 'app' }, ips: ['10.0.0.2'] });
  cache.observe('default/app', 'api.github.com', ['192.0.2.1'], 60);
  cache.observe('default/b', 'api.github.com', ['192.0.2.1'], 60);
  cache.observe('default/app', 'a.example.com', ['192.0.2.5'], 60);
  cache.observe('default/app', 'b.example.com', ['192.0.2.6'], 60);
  await e.settled();
  e.flush();

  // One endpoint's entry of a name both learned: the union is unchanged, the identity stays.
  assert.deepEqual(cache.flush({ endpoint: 'default/b', name: (n) => n === 'api.github.com' }), [{ endpoint: 'default/b', name: 'api.github.com', ips: ['192.0.2.1'] }]);
  await e.settled();
  e.flush();
  assert.notEqual(e.identityOfIp('192.0.2.1'), WORLD);
  // Every endpoint's: gone.
  assert.equal(cache.flush({ name: (n) => n === 'api.github.com' }).length, 1);
  await e.settled();
  e.flush();
  assert.equal(e.identityOfIp('192.0.2.1'), WORLD);
  assert.ok(!inIpcache(e, '192.0.2.1'));
  assert.equal(verdict443(e, '192.0.2.1'), 'DENY');

  // An address a connection uses is kept, expired: the sweep takes it once unused.
  const now = Date.now();
  const removed = cache.flush({ endpoint: 'default/app' }, (ip) => ip === '192.0.2.5', now);
  assert.deepEqual(removed, [{ endpoint: 'default/app', name: 'b.example.com', ips: ['192.0.2.6'] }]);
  assert.deepEqual(cache.lookup('a.example.com'), ['192.0.2.5']);
  assert.ok((cache.list('default/app')[0]?.ips[0]?.expiresAt ?? Infinity) <= now);
  assert.deepEqual(cache.expire(now + 1, (ip) => ip === '192.0.2.5'), []);
  assert.deepEqual(cache.expire(now + 1, () => false), ['a.example.com']);
  await e.settled();
  e.flush();
  assert.deepEqual(cache.list(), []);
  assert.deepEqual([...e.allocator.all()].filter((i) => i.scope === 'local'), []);
});
