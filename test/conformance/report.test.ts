import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshdError } from '../../src/util/errors.js';
import { parseReport, renderReadme } from './report.js';

// The shape conformance.test --report-output writes (conformance/apis/v1 of the suite).
const REPORT = `apiVersion: gateway.networking.k8s.io/v1
date: "2026-12-02T08:45:00Z"
gatewayAPIChannel: experimental
gatewayAPIVersion: v1.7.0
implementation:
  contact:
  - meshd maintainers
  organization: meshd
  project: meshd
  url: https://meshd.io
  version: 0.1.0+abc
kind: ConformanceReport
mode: default
profiles:
- core:
    failedTests:
    - HTTPRouteSimpleSameNamespace
    result: failure
    statistics:
      Failed: 1
      Passed: 32
      Skipped: 0
  extended:
    failedTests:
    - HTTPRouteRequestMirror
    result: failure
    statistics:
      Failed: 1
      Passed: 20
      Skipped: 0
    supportedFeatures:
    - HTTPRouteRequestMirror
    - HTTPRouteQueryParamMatching
  name: GATEWAY-HTTP
  summary: Core tests failed with 1 test failures. Extended tests failed with 1 test failures.
`;

test('report: the suite\'s report is read and summarised with the published comparisons', () => {
  const report = parseReport(REPORT, 'gateway-api.yaml');
  assert.equal(report.profiles[0]?.core.statistics.Passed, 32);
  const md = renderReadme(report, { command: 'npm run test:gateway-conformance', meshdVersion: '0.1.0+abc', developmentRun: true, notes: ['a note'], refusedImages: [] });
  assert.match(md, /\| GATEWAY-HTTP \| 32 \/ 1 \/ 0 \| 20 \/ 1 \/ 0 \| 2 \|/);
  assert.match(md, /\| meshd 0\.1\.0\+abc \| v1\.7\.0 \| 32\/33 \| 20 \| this run \|/);
  assert.match(md, /\| Cilium 1\.19\.0-pre\.2 \| v1\.4\.0 \| 33\/33 \| 25 \|/);
  assert.match(md, /\| Istio 1\.28 \| v1\.4\.0 \| 33\/33 \| 28 \|/);
  assert.match(md, /- GATEWAY-HTTP core: HTTPRouteSimpleSameNamespace/);
  assert.match(md, /- GATEWAY-HTTP extended: HTTPRouteRequestMirror/);
  assert.match(md, /\*\*Development run\.\*\*/);
});

test('report: a report with a missing field is refused', () => {
  assert.throws(
    () => parseReport(REPORT.replace('      Passed: 32\n', ''), 'gateway-api.yaml'),
    (e: unknown) => isMeshdError(e, 'MESHD_CONFORMANCE_REPORT_INVALID'),
  );
  assert.throws(() => parseReport('a: [', 'x.yaml'), (e: unknown) => isMeshdError(e, 'MESHD_CONFORMANCE_REPORT_INVALID'));
});

test('report: a report of a run whose setup failed (no profiles) is summarised as such', () => {
  const report = parseReport(REPORT.slice(0, REPORT.indexOf('profiles:')) + 'profiles: null\n', 'gateway-api.yaml');
  assert.deepEqual(report.profiles, []);
  assert.match(renderReadme(report, { command: 'x', meshdVersion: 'v', developmentRun: true, notes: [], refusedImages: [] }), /No test ran/);
});
