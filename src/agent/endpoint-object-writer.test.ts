import assert from 'node:assert/strict';
import { test } from 'node:test';
import { statusDigest, type MeshdEndpointStatus } from '../k8s/meshd-endpoint.js';
import { planWrites, type DesiredEndpoint } from './endpoint-object-writer.js';

const desired = (name: string, over: Partial<MeshdEndpointStatus> = {}): [string, DesiredEndpoint] => [
  `default/${name}`,
  {
    namespace: 'default',
    name,
    status: {
      nodeName: 'node-a',
      endpointID: 1,
      identity: { id: 300, labels: ['k8s:app=web'] },
      networking: { addresses: [{ ipv4: '10.0.0.5' }] },
      namedPorts: [],
      state: 'ready',
      policy: { ingress: { enforcing: false }, egress: { enforcing: false } },
      health: { healthy: true, lastUpdate: '' },
      ...over,
    },
  },
];

test('planWrites: creates what is missing, updates what differs, deletes what is no longer local, and nothing else', () => {
  const want = new Map([desired('same'), desired('changed', { state: 'regenerating' }), desired('new')]);
  const written = new Map([
    ['default/same', { digest: statusDigest(desired('same')[1].status) }],
    ['default/changed', { digest: statusDigest(desired('changed')[1].status) }],
    ['default/gone', { digest: 'x' }],
  ]);
  const ops = planWrites(want, written).map((o) => `${o.op} ${o.id}`);
  assert.deepEqual(ops.sort(), ['delete default/gone', 'upsert default/changed', 'upsert default/new']);
});

test('planWrites: nothing changed, nothing written; a new lastUpdate alone is no change', () => {
  const want = new Map([desired('a'), desired('b')]);
  const written = new Map([...want].map(([id, d]) => [id, { digest: statusDigest({ ...d.status, health: { healthy: true, lastUpdate: '2026-01-01T00:00:00Z' } }) }]));
  assert.deepEqual(planWrites(want, written), []);
});
