/**
 * Golden cases (test/fixtures/gateway/<case>/): the resources and status
 * computed from each input must equal output.yaml, and every resource must
 * encode as the Envoy message it claims to be, in a consistent snapshot.
 * Regenerate after a deliberate change: node dist/src/gateway/golden.js --update
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { buildSnapshot, checkConsistency } from '../../xds/index.js';
import { goldenCases, runCase } from './golden.js';
import { translate } from './translate.js';

for (const c of goldenCases()) {
  test(`golden: ${c}`, () => {
    const r = runCase(c);
    assert.equal(r.actual, readFileSync(r.expectedPath, 'utf8'), `${c}: output differs (node dist/src/gateway/golden.js --update ${c})`);
    const res = translate(r.model, { accessLog: true });
    const snap = buildSnapshot({ version: 'v1', resources: { listeners: res.listeners, routes: res.routes, clusters: res.clusters, endpoints: res.endpoints, secrets: res.secrets } });
    checkConsistency(snap);
  });
}
