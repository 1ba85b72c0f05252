import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildHttpConnectionManager } from '../proxy/http-connection-manager.js';
import { createLogger } from '../util/log.js';
import { loadConfig } from './config.js';
import { proxyOptions } from './start-proxy.js';

test('the node Envoy logs requests to the agent only while the flow observer runs (hubble.enabled)', () => {
  const log = createLogger({ component: 'test' }, { level: 'error' });
  const on = proxyOptions(loadConfig({ env: {} }), log, false);
  const off = proxyOptions(loadConfig({ env: {}, flags: { 'hubble.enabled': 'false' } }), log, false);
  assert.equal(on.accessLog, true);
  assert.equal(off.accessLog, false);
  // What the option changes in each HTTP connection manager: the gRPC access log, and nothing else.
  const hcm = (accessLog: boolean | undefined) => buildHttpConnectionManager({ statPrefix: 'default_api_ingress_8080', rbac: [], cluster: 'c', ...(accessLog === undefined ? {} : { accessLog }) });
  const withLog = hcm(on.accessLog);
  const without = hcm(off.accessLog);
  assert.equal(JSON.stringify(withLog.access_log).includes('envoy.access_loggers.http_grpc'), true);
  assert.equal(without.access_log, undefined);
  assert.deepEqual({ ...withLog, access_log: undefined }, { ...without, access_log: undefined });
});
