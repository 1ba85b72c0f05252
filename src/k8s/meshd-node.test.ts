import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import { repoPath } from '../util/paths.js';
import { renderCrdsYaml } from './crds.js';
import { lastSeen, meshdNodeBody, meshdPodCidrBody, NODE_CRDS_FILE, NODE_CRDS_HEADER, nodeCrds, parseMeshdNode, parseMeshdPodCidr, podCidrObjectName } from './meshd-node.js';

const fields = {
  name: 'node-a',
  podCIDRs: ['10.0.3.0/24'],
  podCIDRSource: 'cluster-pool' as const,
  addresses: [{ type: 'InternalIP' as const, ip: '192.0.2.10' }, { type: 'MeshdHostIP' as const, ip: '198.51.100.7' }],
  healthy: true,
  lastHeartbeat: '2026-12-02T01:00:00.000Z',
  agentVersion: '0.1.0',
  endpoints: 3,
};

test('the shipped install/crds/meshd.io_meshdnodes.yaml is what the definitions generate', () => {
  assert.equal(readFileSync(repoPath('install', 'crds', NODE_CRDS_FILE), 'utf8'), renderCrdsYaml(NODE_CRDS_HEADER, nodeCrds()));
});

test('MeshdNode CRD: cluster scoped, short name mn, PodCIDR/Healthy/Age columns; MeshdPodCIDR names its node', () => {
  const [node, claim] = nodeCrds();
  assert.equal(node?.metadata.name, 'meshdnodes.meshd.io');
  assert.equal(node?.spec.scope, 'Cluster');
  assert.deepEqual(node?.spec.names.shortNames, ['mn']);
  assert.deepEqual(node?.spec.versions[0]?.additionalPrinterColumns.map((c) => [c.name, c.jsonPath]), [
    ['PodCIDR', '.spec.podCIDRs[0]'],
    ['Healthy', '.status.health.healthy'],
    ['Age', '.metadata.creationTimestamp'],
  ]);
  assert.equal(claim?.metadata.name, 'meshdpodcidrs.meshd.io');
  assert.deepEqual(claim?.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec?.required, ['cidr', 'node']);
});

test('a built MeshdNode parses back to the same fields', () => {
  const body = meshdNodeBody(fields);
  const n = parseMeshdNode(body);
  assert.equal(n.metadata.name, 'node-a');
  assert.deepEqual(n.spec, { podCIDRs: fields.podCIDRs, podCIDRSource: 'cluster-pool', addresses: fields.addresses });
  assert.deepEqual(n.status, { health: { healthy: true, lastHeartbeat: fields.lastHeartbeat }, agentVersion: '0.1.0', endpoints: 3 });
  assert.equal(lastSeen(n), Date.parse(fields.lastHeartbeat));
  assert.equal(lastSeen(parseMeshdNode({ metadata: { name: 'x', creationTimestamp: '2026-12-01T00:00:00Z' }, spec: {} })), Date.parse('2026-12-01T00:00:00Z'), 'never beat: its creation');
});

test('a MeshdNode that does not fit is refused with its code, naming the field', () => {
  for (const bad of [
    { metadata: { name: 'n' }, spec: { podCIDRs: 'not-a-list' } },
    { metadata: { name: 'n' }, spec: { addresses: [{ type: 'Hostname', ip: 'h' }] } },
    { metadata: { name: 'n' }, spec: {}, status: { endpoints: -1 } },
    { metadata: {}, spec: {} },
  ]) {
    assert.throws(() => parseMeshdNode(bad), (e: unknown) => isMeshdError(e, 'MESHD_K8S_NODE_OBJECT_INVALID') && e.kind === 'invalid', JSON.stringify(bad));
  }
  assert.throws(() => parseMeshdNode({ metadata: { name: 'n' }, spec: { podCIDRs: 1 } }), (e: unknown) => e instanceof Error && e.message.includes('spec.podCIDRs'));
});

test('a pod CIDR claim is named from its CIDR (a valid object name) and round-trips', () => {
  assert.equal(podCidrObjectName('10.0.3.0/24'), '10.0.3.0-24');
  assert.match(podCidrObjectName('10.0.3.0/24'), /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
  const c = parseMeshdPodCidr({ ...meshdPodCidrBody('10.0.3.0/24', 'node-a'), metadata: { name: '10.0.3.0-24', resourceVersion: '7' } });
  assert.deepEqual(c.spec, { cidr: '10.0.3.0/24', node: 'node-a' });
  assert.throws(() => parseMeshdPodCidr({ metadata: { name: 'x' }, spec: { cidr: '10.0.0.0/24' } }), (e: unknown) => isMeshdError(e, 'MESHD_K8S_NODE_OBJECT_INVALID'));
});
