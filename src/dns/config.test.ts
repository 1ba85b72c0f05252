import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../agent/config.js';
import { isMeshdError } from '../util/errors.js';

test("dnsProxy.* keys: Cilium's defaults, durations, the reject code, transparent mode", () => {
  const d = loadConfig({ env: {} });
  assert.deepEqual(
    [d['dnsProxy.proxyPort'], d['dnsProxy.minTtl'], d['dnsProxy.endpointMaxIpPerHostname'], d['dnsProxy.proxyResponseMaxDelay'], d['dnsProxy.dnsRejectResponseCode'], d['dnsProxy.idleConnectionGracePeriod'], d['dnsProxy.enableTransparentMode']],
    [0, 0, 1000, 100, 'refused', 0, false],
  );
  const c = loadConfig({ env: { MESHD_DNSPROXY_MINTTL: '60' }, flags: { 'dnsProxy.proxyResponseMaxDelay': '1s', 'dnsProxy.dnsRejectResponseCode': 'nameError', 'dnsProxy.idleConnectionGracePeriod': '30s' } });
  assert.deepEqual([c['dnsProxy.minTtl'], c['dnsProxy.proxyResponseMaxDelay'], c['dnsProxy.dnsRejectResponseCode'], c['dnsProxy.idleConnectionGracePeriod']], [60, 1000, 'nameError', 30_000]);
  assert.equal(loadConfig({ env: {}, flags: { 'dnsProxy.enableTransparentMode': 'true' } })['dnsProxy.enableTransparentMode'], true);
  const bad: Array<Record<string, string>> = [{ 'dnsProxy.enableTransparentMode': 'yes please' }, { 'dnsProxy.dnsRejectResponseCode': 'servfail' }, { 'dnsProxy.proxyPort': '70000' }];
  for (const flags of bad) {
    assert.throws(
      () => loadConfig({ env: {}, flags }),
      (e: unknown) => isMeshdError(e, 'MESHD_CONFIG_INVALID'),
      JSON.stringify(flags),
    );
  }
});
