import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import { isMeshdError } from '../../src/util/errors.js';
import { repoPath } from '../../src/util/paths.js';
import { parseReport, renderReadme } from './report.js';
import { parseSuiteLog, summarize } from './suite-log.js';

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

// Real -test.v output of conformance.test v1.7.0 against meshd (stdout and stderr as the harness saves them),
// cut to the lines the parser reads: a --quick run that passed, and a full run whose setup failed.
const PASSED = readFileSync(repoPath('test', 'conformance', 'testdata', 'suite-quick-pass.txt'), 'utf8');
const SETUP_FAILED = readFileSync(repoPath('test', 'conformance', 'testdata', 'suite-setup-failed.txt'), 'utf8');
const META = { command: 'npm run test:gateway-conformance', meshdVersion: '0.1.0+abc', gatewayAPIVersion: 'v1.7.0', gatewayAPIChannel: 'experimental', date: '2026-12-02T16:00:00Z', notes: ['a note'], refusedImages: [] };
const PROFILES = ['GATEWAY-HTTP', 'GATEWAY-GRPC'];

test('report: the suite log gives each test its verdict and features, and the profiles their counts', () => {
  const log = parseSuiteLog(PASSED);
  assert.equal(log.finished, true);
  assert.equal(log.verdict, 'PASS');
  assert.ok(log.supportedFeatures?.includes('HTTPRouteQueryParamMatching'), 'the run\'s claimed features come from the suite\'s header');
  assert.deepEqual(
    log.tests.map((t) => [t.name, t.result, t.features.join(',')]).sort(),
    [
      ['GatewayClassObservedGenerationBump', 'passed', 'Gateway'],
      ['HTTPRouteMatching', 'passed', 'Gateway,HTTPRoute'],
      ['HTTPRouteSimpleSameNamespace', 'passed', 'Gateway,HTTPRoute'],
    ],
    'sub-subtests (HTTPRouteMatching/0_request...) are not tests of their own',
  );
  const s = summarize(log, PROFILES, ['Gateway', 'HTTPRoute', 'GRPCRoute', 'HTTPRouteQueryParamMatching']);
  const byName = new Map(s.profiles.map((p) => [p.name, p]));
  assert.deepEqual(byName.get('GATEWAY-HTTP')?.core.passed.sort(), ['GatewayClassObservedGenerationBump', 'HTTPRouteMatching', 'HTTPRouteSimpleSameNamespace']);
  // Gateway-only tests count in every profile, as in the suite's report; HTTPRoute tests not in GATEWAY-GRPC.
  assert.deepEqual(byName.get('GATEWAY-GRPC')?.core.passed, ['GatewayClassObservedGenerationBump']);
  assert.deepEqual(s.features.map((f) => [f.feature, f.passes]), [['HTTPRouteQueryParamMatching', false]], 'core features are not extended features; a feature no test ran does not pass');
});

test('report: the extended side: a test relying on an extended feature is extended, and its feature passes only when all its tests do', () => {
  const extended = PASSED.replace('relying on the following features: Gateway-standard, HTTPRoute-standard\n', 'relying on the following features: Gateway-standard, HTTPRoute-standard, HTTPRouteQueryParamMatching-standard\n');
  const s = summarize(parseSuiteLog(extended), PROFILES, ['HTTPRouteQueryParamMatching']);
  const http = s.profiles.find((p) => p.name === 'GATEWAY-HTTP');
  assert.deepEqual(http?.extended.passed, ['HTTPRouteMatching']);
  assert.deepEqual(s.features, [{ feature: 'HTTPRouteQueryParamMatching', tests: { passed: ['HTTPRouteMatching'], failed: [], skipped: [] }, passes: true }]);
  const failing = extended.replace('--- PASS: TestConformance/HTTPRouteMatching (', '--- FAIL: TestConformance/HTTPRouteMatching (');
  const f = summarize(parseSuiteLog(failing), PROFILES, ['HTTPRouteQueryParamMatching']);
  assert.equal(f.features[0]?.passes, false);
  assert.deepEqual(f.profiles.find((p) => p.name === 'GATEWAY-HTTP')?.extended.failed, ['HTTPRouteMatching']);
});

test('report: the README tables come from the verdicts, next to the published numbers, and say why there is no official report', () => {
  const md = renderReadme(summarize(parseSuiteLog(PASSED), PROFILES, ['Gateway', 'HTTPRoute', 'HTTPRouteQueryParamMatching']), { ...META, load: '31.0, 30.2, 25.1' });
  assert.ok(md.includes('| GATEWAY-HTTP | 3 / 0 / 0 | 0 / 0 / 0 |'), md);
  assert.ok(md.includes('| meshd 0.1.0+abc | v1.7.0 | 3/3 | 0 | this run |'));
  assert.match(md, /\| Cilium 1\.19\.0-pre\.2 \| v1\.4\.0 \| 33\/33 \| 25 \|/);
  assert.match(md, /\| Istio 1\.28 \| v1\.4\.0 \| 33\/33 \| 28 \|/);
  assert.match(md, /\| HTTPRouteQueryParamMatching \| 0 \/ 0 \/ 0 \| no test ran \|/);
  assert.match(md, /\| HTTPRouteMatching \| GATEWAY-HTTP: core \| passed \|/);
  assert.match(md, /URL and contact .*maintainer's decision/);
  assert.match(md, /\*\*Development run\*\*/);
  assert.match(md, /## Failed tests\n\nNone\./);
});

test('report: a run whose setup failed has no tests, and the README gives the suite\'s own reason', () => {
  const log = parseSuiteLog(SETUP_FAILED);
  assert.equal(log.tests.length, 0);
  assert.equal(log.verdict, 'FAIL');
  assert.deepEqual(log.failures, [{ test: '', message: 'error waiting for gateway-conformance-infra, gateway-conformance-app-backend, gateway-conformance-web-backend namespaces to be ready: Received unexpected error: context deadline exceeded' }]);
  const md = renderReadme(summarize(log, PROFILES, []), META);
  assert.match(md, /\*\*the suite's setup\*\* \(no test ran after it\): error waiting for gateway-conformance-infra/);
  const cut = PASSED.slice(0, PASSED.indexOf('--- PASS: TestConformance ('));
  assert.equal(parseSuiteLog(cut).finished, false);
  const unfinished = summarize(parseSuiteLog(cut), PROFILES, []);
  assert.deepEqual([...unfinished.unfinished].sort(), ['GatewayClassObservedGenerationBump', 'HTTPRouteMatching', 'HTTPRouteSimpleSameNamespace']);
  const cutMd = renderReadme(unfinished, META);
  assert.match(cutMd, /The run did not finish/);
  assert.match(cutMd, /## Tests without a verdict\n[^]*- HTTPRouteMatching: no failed assertion logged/);
});

test('report: a report with a missing field is refused', () => {
  assert.throws(
    () => parseReport(REPORT.replace('      Passed: 32\n', ''), 'gateway-api.yaml'),
    (e: unknown) => isMeshdError(e, 'MESHD_CONFORMANCE_REPORT_INVALID'),
  );
  assert.throws(() => parseReport('a: [', 'x.yaml'), (e: unknown) => isMeshdError(e, 'MESHD_CONFORMANCE_REPORT_INVALID'));
});

