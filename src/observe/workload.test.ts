import assert from 'node:assert/strict';
import { test } from 'node:test';
import { podWorkload } from './workload.js';

test('workload: a ReplicaSet is named for its Deployment, a Job for its CronJob, other controllers as they are', () => {
  const rs = (name: string, labels?: Record<string, string>) => podWorkload({ ownerReferences: [{ kind: 'ReplicaSet', name, controller: true }], ...(labels ? { labels } : {}) });
  assert.deepEqual(rs('api-7d9f8c6b5', { 'pod-template-hash': '7d9f8c6b5' }), { kind: 'Deployment', name: 'api' });
  assert.deepEqual(rs('web-frontend-5c8b7', {}), { kind: 'Deployment', name: 'web-frontend' });
  // The hash label says otherwise: a ReplicaSet made by hand.
  assert.deepEqual(rs('cache-abc', { 'pod-template-hash': 'zzz' }), { kind: 'ReplicaSet', name: 'cache-abc' });
  assert.deepEqual(podWorkload({ ownerReferences: [{ kind: 'Job', name: 'backup-28911520', controller: true }] }), { kind: 'CronJob', name: 'backup' });
  assert.deepEqual(podWorkload({ ownerReferences: [{ kind: 'Job', name: 'migrate', controller: true }] }), { kind: 'Job', name: 'migrate' });
  assert.deepEqual(podWorkload({ ownerReferences: [{ kind: 'StatefulSet', name: 'db', controller: true }] }), { kind: 'StatefulSet', name: 'db' });
  // Only the controlling owner counts; a bare Pod has none.
  assert.equal(podWorkload({ ownerReferences: [{ kind: 'ConfigMap', name: 'x' }] }), undefined);
  assert.equal(podWorkload({}), undefined);
});
