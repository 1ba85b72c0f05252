/**
 * IPv6 answers through toFQDNs: the AAAA addresses of an allowed answer (along
 * its CNAME chain) enter the FQDN cache, get a CIDR identity of their own
 * (/128), appear in the ipcache the datapath is written from, and open the
 * selector's port for exactly those addresses, as A answers do.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { loadPolicyText } from '../policy/api/loader.js';
import { FqdnCache } from '../policy/dns-cache.js';
import { PolicyEngine } from '../policy/engine.js';
import { lookupEntries } from '../policy/lookup.js';
import { Proto } from '../policy/types.js';
import { answerAddresses, parseAnswer, parseQuery } from './message.js';

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: v6, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: app}}
  egress:
    - toFQDNs: [{matchName: www.example.com}]
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`;

test('AAAA answers: v6 addresses get /128 CIDR identities in the ipcache and open the toFQDNs port for exactly them', async () => {
  const query = dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'AAAA', name: 'www.example.com' }] });
  const q = parseQuery(query);
  assert.ok(q.ok);
  const wire = dnsPacket.encode({
    type: 'response',
    id: 7,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type: 'AAAA', name: 'www.example.com' }],
    answers: [
      { type: 'CNAME', name: 'www.example.com', ttl: 60, data: 'edge.example.net' },
      { type: 'AAAA', name: 'edge.example.net', ttl: 30, data: '2001:db8::7' },
      { type: 'AAAA', name: 'unrelated.example.org', ttl: 30, data: '2001:db8::99' },
    ],
  });
  const a = parseAnswer(wire, q.query);
  assert.ok(a.ok);
  const addrs = answerAddresses(a.packet, q.query.name);
  assert.deepEqual(addrs, { ips: ['2001:db8::7'], names: ['www.example.com', 'edge.example.net'], ttl: 30 });

  const cache = new FqdnCache({ minTtlSeconds: 0 });
  const e = new PolicyEngine({ dns: cache });
  await e.upsertEndpoint({ namespace: 'default', name: 'app', labels: { app: 'app' }, ips: ['10.0.0.1', 'fd00::1'] });
  const loaded = loadPolicyText(POLICY, 'v6.yaml');
  assert.deepEqual(loaded.problems, []);
  for (const p of loaded.policies) await e.upsertPolicy(p.document);
  e.flush();
  for (const n of addrs.names) cache.observe('default/app', n, addrs.ips, addrs.ttl);
  await e.settled();
  e.flush();

  const id = e.identityOfIp('2001:db8::7');
  assert.ok(id > 0 && id !== e.identityOfIp('2001:db8::8'), 'the address has an identity of its own');
  assert.ok(e.ipcache().some((c) => c.prefix === '2001:db8::7/128' && c.identity === id), JSON.stringify(e.ipcache()));
  const egress = e.endpointPolicy('default/app')?.egress;
  assert.ok(egress);
  assert.equal(lookupEntries(egress, id, Proto.TCP, 443).verdict, 'ALLOW');
  assert.equal(lookupEntries(egress, id, Proto.TCP, 80).verdict, 'DENY');
  assert.equal(lookupEntries(egress, e.identityOfIp('2001:db8::99'), Proto.TCP, 443).verdict, 'DENY');

  // Expiry takes the v6 address out again.
  assert.deepEqual(cache.expire(Date.now() + 31_000).sort(), ['edge.example.net', 'www.example.com']);
  await e.settled();
  e.flush();
  assert.ok(!e.ipcache().some((c) => c.prefix === '2001:db8::7/128'));
  assert.equal(lookupEntries(e.endpointPolicy('default/app')?.egress ?? { defaultDeny: true, entries: [] }, e.identityOfIp('2001:db8::7'), Proto.TCP, 443).verdict, 'DENY');
});
