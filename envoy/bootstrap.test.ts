/** The bootstrap builder without Envoy (Envoy validating its output: test/integration/envoy-bootstrap.test.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildBootstrap } from './bootstrap.js';

test('admin on a non-loopback address is refused, naming the field', () => {
  assert.throws(
    () => buildBootstrap({ nodeId: 'n', xds: { unix: '/x' }, admin: { host: '0.0.0.0' as '127.0.0.1', port: 9901 } }),
    (e: unknown) => e instanceof Error && /admin/.test(e.message),
  );
});
