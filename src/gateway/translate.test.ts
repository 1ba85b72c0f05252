/**
 * Golden cases (test/fixtures/gateway/<case>/): the resources and status
 * computed from each input must equal output.yaml, and every resource must
 * encode as the Envoy message it claims to be, in a consistent snapshot.
 * Regenerate after a deliberate change: node dist/src/gateway/golden.js --update
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildSnapshot, checkConsistency } from '../../xds/index.js';
import { repoPath } from '../util/paths.js';
import { goldenCases, inputFromObjects, parseObjectsYaml, runCase } from './golden.js';
import { ingest } from './ingestion.js';
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

test('examples/gateway-api parses and its Gateway is accepted', () => {
  const dir = repoPath('examples', 'gateway-api');
  const objects = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseObjectsYaml(readFileSync(join(dir, f), 'utf8'), f));
  const model = ingest(inputFromObjects(objects, ['192.0.2.10']));
  const gw = model.status.gateways.get('default/web');
  assert.equal(gw?.conditions.find((c) => c.type === 'Accepted')?.status, 'True');
  assert.equal(model.status.routes.get('HTTPRoute/default/web')?.[0]?.conditions.find((c) => c.type === 'Accepted')?.status, 'True');
});
