import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderEndpointObjects } from './node.js';

test('meshd status: the endpoint objects line names pending writes, the last error and identity mismatches', () => {
  const line = renderEndpointObjects({
    writer: { adopted: true, objects: 3, pendingWrites: 1, writes: 9, lastError: { code: 'MESHD_K8S_UNREACHABLE', message: 'connect ECONNREFUSED', at: '2026-12-02T01:00:00.000Z' } },
    remote: { synced: true, served: true, objects: 2, lastError: null, identityMismatches: [{ endpoint: 'default/r2', node: 'node-b', objectIdentity: 40001, localIdentity: 40000, at: '2026-12-02T01:00:00.000Z' }] },
  });
  assert.equal(
    line,
    '3 written, 1 pending; last write error MESHD_K8S_UNREACHABLE at 2026-12-02T01:00:00.000Z: connect ECONNREFUSED; 2 of other nodes; IDENTITY MISMATCH default/r2 (node node-b): object says 40001, this node has 40000',
  );
});
