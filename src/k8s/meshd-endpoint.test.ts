import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { repoPath } from '../util/paths.js';
import { renderCrdsYaml } from './crds.js';
import { addressesOf, addressStrings, buildMeshdEndpoint, MEP_CRD_FILE, MEP_CRD_HEADER, MEP_NODE_LABEL, meshdEndpointCrd, parseMeshdEndpoint, statusDigest, type MeshdEndpointStatus } from './meshd-endpoint.js';

const status = (over: Partial<MeshdEndpointStatus> = {}): MeshdEndpointStatus => ({
  nodeName: 'node-a',
  endpointID: 7,
  identity: { id: 4242, labels: ['k8s:app=web', 'k8s:io.kubernetes.pod.namespace=default'] },
  networking: { addresses: [{ ipv4: '10.0.0.5' }] },
  namedPorts: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  state: 'ready',
  policy: { ingress: { enforcing: true }, egress: { enforcing: false } },
  health: { healthy: true, lastUpdate: '2026-12-02T00:00:00.000Z' },
  ...over,
});

test('install/crds/ holds what the generator makes from the MeshdEndpoint schema (run node scripts/gen-crds.mjs after a change)', () => {
  assert.equal(readFileSync(repoPath('install', 'crds', MEP_CRD_FILE), 'utf8'), renderCrdsYaml(MEP_CRD_HEADER, [meshdEndpointCrd()]));
});

test('the CRD: namespaced meshd.io/v1alpha1, short name mep, the printer columns, no status subresource', () => {
  const crd = meshdEndpointCrd();
  assert.equal(crd.metadata.name, 'meshdendpoints.meshd.io');
  assert.equal(crd.spec.scope, 'Namespaced');
  assert.deepEqual(crd.spec.names.shortNames, ['mep']);
  const v = crd.spec.versions[0];
  assert.equal(v?.name, 'v1alpha1');
  assert.equal(v?.subresources, undefined);
  assert.deepEqual(v?.additionalPrinterColumns.map((c) => c.name), ['Node', 'Identity', 'IPv4', 'State', 'Age']);
  const st = v?.schema.openAPIV3Schema.properties?.status;
  assert.deepEqual(Object.keys(st?.properties ?? {}), ['nodeName', 'endpointID', 'identity', 'networking', 'namedPorts', 'state', 'policy', 'health']);
  assert.deepEqual(st?.properties?.state?.enum, ['ready', 'waiting-for-identity', 'regenerating', 'not-ready']);
});

test('built objects parse back to the same status; they are owned by the pod and labelled with the node', () => {
  const obj = buildMeshdEndpoint({ namespace: 'default', name: 'web', podUid: 'uid-1', status: status() });
  assert.deepEqual(obj.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Pod', name: 'web', uid: 'uid-1', blockOwnerDeletion: false }]);
  assert.equal(obj.metadata.labels[MEP_NODE_LABEL], 'node-a');
  const r = parseMeshdEndpoint(JSON.parse(JSON.stringify(obj)));
  assert.ok(r.ok);
  assert.deepEqual(r.value.status, status());
  assert.equal(buildMeshdEndpoint({ namespace: 'default', name: 'web', status: status() }).metadata.ownerReferences, undefined, 'no pod, no owner');
});

test('invalid objects are refused with the field path', () => {
  const bad = (mut: (o: ReturnType<typeof buildMeshdEndpoint>) => void): string[] => {
    const o = buildMeshdEndpoint({ namespace: 'default', name: 'web', status: status() });
    mut(o);
    const r = parseMeshdEndpoint(JSON.parse(JSON.stringify(o)));
    assert.ok(!r.ok);
    return r.problems.map((p) => p.path.join('.'));
  };
  assert.deepEqual(bad((o) => (o.status.networking.addresses = [{ ipv4: '10.0.0.300' }])), ['status.networking.addresses.0.ipv4']);
  assert.deepEqual(bad((o) => (o.status.networking.addresses = [{ ipv6: '10.0.0.1' }])), ['status.networking.addresses.0.ipv6']);
  assert.deepEqual(bad((o) => Object.assign(o.status, { state: 'happy' })), ['status.state']);
  assert.deepEqual(bad((o) => Object.assign(o.status.identity, { id: 'x' })), ['status.identity.id']);
  assert.deepEqual(bad((o) => (o.status.namedPorts = [{ name: 'http', port: 70000, protocol: 'TCP' }])), ['status.namedPorts.0.port']);
});

test('the digest ignores health.lastUpdate and the order of labels, and sees every other field', () => {
  const base = statusDigest(status());
  assert.equal(statusDigest(status({ health: { healthy: true, lastUpdate: 'later' } })), base);
  assert.equal(statusDigest(status({ identity: { id: 4242, labels: ['k8s:io.kubernetes.pod.namespace=default', 'k8s:app=web'] } })), base);
  const changes: Array<Partial<MeshdEndpointStatus>> = [
    { nodeName: 'node-b' },
    { endpointID: 8 },
    { identity: { id: 4243, labels: status().identity.labels } },
    { identity: { id: 4242, labels: ['k8s:app=db'] } },
    { networking: { addresses: [{ ipv4: '10.0.0.6' }] } },
    { namedPorts: [] },
    { state: 'regenerating' },
    { policy: { ingress: { enforcing: false }, egress: { enforcing: false } } },
    { policy: { ingress: { enforcing: true }, egress: { enforcing: true } } },
    { health: { healthy: false, lastUpdate: '' } },
  ];
  for (const c of changes) assert.notEqual(statusDigest(status(c)), base, JSON.stringify(c));
});

test('addresses: v4 and v6 paired in order, prefix lengths dropped', () => {
  assert.deepEqual(addressesOf(['10.0.0.9/32', 'fd00::9/128', '10.0.0.2']), [{ ipv4: '10.0.0.2', ipv6: 'fd00::9' }, { ipv4: '10.0.0.9' }]);
  assert.deepEqual(addressStrings(status({ networking: { addresses: [{ ipv4: '10.0.0.2', ipv6: 'fd00::9' }] } })), ['10.0.0.2', 'fd00::9']);
});
