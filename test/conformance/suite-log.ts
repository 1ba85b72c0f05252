/**
 * The Gateway API conformance suite's per-test results read from its own
 * `-test.v` output, and sorted into profiles, core and extended the way the
 * suite's report does (conformance/utils/suite/reports.go and profiles.go of
 * v1.7.0). This is what docs/conformance/README.md is written from: the
 * suite writes its YAML report only with the implementation's url and
 * contact, its log always.
 *
 *   const log = parseSuiteLog(readFileSync('suite.log', 'utf8'));
 *   const summary = summarize(log, PROFILES, SUPPORTED_FEATURES);
 */

export type TestResult = 'passed' | 'failed' | 'skipped' | 'not-supported';

export interface SuiteTest {
  /** The test's ShortName (TestConformance/<name>). */
  name: string;
  result: TestResult;
  /** The features the suite said the test relies on (its "Running X, relying on the following features" line), channel suffix removed. */
  features: string[];
  /** For a skipped test, the suite's reason. */
  skipReason?: string;
}

export interface SuiteLog {
  /** Every test with a verdict line, in the order the verdicts were printed. */
  tests: SuiteTest[];
  /** Whether TestConformance itself ended (a PASS or FAIL line for it): false for a run stopped half-way. */
  finished: boolean;
  /** The parent's own verdict, when it ended. */
  verdict?: 'PASS' | 'FAIL';
  /** The suite's failed assertions (testify's Error/Test/Messages blocks), in order; test '' is the suite's setup. */
  failures: Array<{ test: string; message: string }>;
  /** Tests that started (=== RUN), in order: in a run that did not finish, those without a verdict are the rest. */
  started: string[];
  /** The features the run claimed (the suite's "Supported Features: [...]" line), when it printed them. */
  supportedFeatures?: string[];
}

const VERDICT = /^\s*--- (PASS|FAIL|SKIP): TestConformance(?:\/([^/\s]+))? \(/;
const RELYING = /Running (\S+), relying on the following features: (.*)$/;
const SKIPPING = /Skipping (\S+): (.*)$/;

/** Parses the suite's `-test.v` output (stdout and stderr together, as the harness saves it). */
export function parseSuiteLog(text: string): SuiteLog {
  const features = new Map<string, string[]>();
  const skipReasons = new Map<string, string>();
  const verdicts = new Map<string, 'PASS' | 'FAIL' | 'SKIP'>();
  let verdict: 'PASS' | 'FAIL' | undefined;
  const failures: SuiteLog['failures'] = [];
  // One testify block at a time: "Error:" (continued on lines of only a tab-indented value), "Test:", "Messages:".
  let block: { error: string[]; test?: string; messages?: string; inError: boolean } | null = null;
  const endBlock = () => {
    if (block?.test !== undefined) {
      const error = block.error.join(' ').replace(/\s+/g, ' ').trim();
      failures.push({ test: block.test === 'TestConformance' ? '' : block.test.replace(/^TestConformance\//, ''), message: block.messages ? `${block.messages}: ${error}` : error });
    }
    block = null;
  };
  const started: string[] = [];
  let supportedFeatures: string[] | undefined;
  for (const line of text.split('\n')) {
    const claimed = /^\s+conformance\.go:\d+:\s+Supported Features: \[(.*)\]$/.exec(line);
    if (claimed?.[1] !== undefined) supportedFeatures = claimed[1].split(' ').filter((f) => f !== '');
    const run = /^=== RUN\s+TestConformance\/([^/\s]+)$/.exec(line);
    if (run?.[1] !== undefined) started.push(run[1]);
    const field = /^\s+\t(Error Trace|Error|Test|Messages):\s*\t(.*)$/.exec(line);
    if (field?.[1] !== undefined && field[2] !== undefined) {
      if (field[1] === 'Error Trace') endBlock();
      block ??= { error: [], inError: false };
      block.inError = field[1] === 'Error';
      if (field[1] === 'Error') block.error.push(field[2]);
      else if (field[1] === 'Test') block.test = field[2].trim();
      else if (field[1] === 'Messages') block.messages = field[2].trim();
      continue;
    }
    const more = /^\s+\t\s+\t(.*)$/.exec(line);
    if (block && more?.[1] !== undefined) {
      if (block.inError) block.error.push(more[1]);
      continue;
    }
    if (block) endBlock();
    const v = VERDICT.exec(line);
    if (v) {
      const kind = v[1] as 'PASS' | 'FAIL' | 'SKIP';
      if (v[2] === undefined) verdict = kind === 'SKIP' ? verdict : kind;
      else verdicts.set(v[2], kind);
      continue;
    }
    const r = RELYING.exec(line);
    if (r?.[1] !== undefined && r[2] !== undefined) {
      features.set(r[1], r[2].split(',').map((f) => f.trim().replace(/-(standard|experimental)$/, '')).filter((f) => f !== ''));
      continue;
    }
    const s = SKIPPING.exec(line);
    if (s?.[1] !== undefined && s[2] !== undefined) skipReasons.set(s[1], s[2].trim());
  }
  const tests: SuiteTest[] = [];
  for (const [name, kind] of verdicts) {
    const reason = skipReasons.get(name);
    const result: TestResult = kind === 'PASS' ? 'passed' : kind === 'FAIL' ? 'failed' : reason?.startsWith('suite does not support ') ? 'not-supported' : 'skipped';
    tests.push({ name, result, features: features.get(name) ?? [], ...(kind === 'SKIP' && reason !== undefined ? { skipReason: reason } : {}) });
  }
  endBlock();
  return { tests, finished: verdict !== undefined, ...(verdict !== undefined ? { verdict } : {}), failures, started, ...(supportedFeatures ? { supportedFeatures } : {}) };
}

/** A profile's core features; its extended features are the predicate (profiles.go of the suite, v1.7.0). */
interface ProfileFeatures {
  core: readonly string[];
  extended: (feature: string) => boolean;
}

const GATEWAY_EXTENDED: ReadonlySet<string> = new Set([
  'GatewayPort8080',
  'GatewayStaticAddresses',
  'GatewayHTTPListenerIsolation',
  'GatewayHTTPSListenerDetectMisdirectedRequests',
  'GatewayInfrastructure',
  'GatewayAddressEmpty',
  'ListenerSet',
  'GatewayBackendClientCertificate',
  'GatewayFrontendClientCertificateValidation',
  'GatewayFrontendClientCertificateValidationInsecureFallback',
  'GatewayAddressRoutability',
  'GatewayAddressRoutabilityCluster',
  'GatewayRouteHostnameIntersectionPrecedence',
  'GatewayListenerFilters',
  'ClusterTrustBundle',
]);
const BACKEND_TLS = (f: string) => f === 'BackendTLSPolicy' || f === 'BackendTLSPolicySANValidation' || f === 'ClusterTrustBundle';

export const PROFILE_FEATURES: Readonly<Record<string, ProfileFeatures>> = {
  'GATEWAY-HTTP': { core: ['Gateway', 'ReferenceGrant', 'HTTPRoute'], extended: (f) => GATEWAY_EXTENDED.has(f) || (f.startsWith('HTTPRoute') && f !== 'HTTPRoute') || BACKEND_TLS(f) },
  // The suite's GRPC profile lists no GRPCRoute extended features: a test relying on one belongs to no profile's report.
  'GATEWAY-GRPC': { core: ['Gateway', 'ReferenceGrant', 'GRPCRoute'], extended: (f) => GATEWAY_EXTENDED.has(f) || BACKEND_TLS(f) },
};

export interface Counts {
  passed: string[];
  failed: string[];
  skipped: string[];
}

export interface ProfileSummary {
  name: string;
  core: Counts;
  extended: Counts;
}

export interface FeatureSummary {
  feature: string;
  /** Tests that rely on it, by result. */
  tests: Counts;
  /** Every test relying on it passed (and there is at least one). */
  passes: boolean;
}

export interface SuiteSummary {
  finished: boolean;
  profiles: ProfileSummary[];
  /** Each claimed extended feature (not a core feature of a claimed profile) with the results of the tests relying on it. */
  features: FeatureSummary[];
  /** Tests that ran but belong to none of the claimed profiles (the suite leaves them out of its report). */
  outsideProfiles: SuiteTest[];
  tests: SuiteTest[];
  /** The suite's failed assertions (SuiteLog.failures). */
  failures: SuiteLog['failures'];
  /** Tests that started but have no verdict (a run that did not finish). */
  unfinished: string[];
}

const empty = (): Counts => ({ passed: [], failed: [], skipped: [] });
const add = (c: Counts, t: SuiteTest) => {
  if (t.result === 'passed') c.passed.push(t.name);
  else if (t.result === 'failed') c.failed.push(t.name);
  else if (t.result === 'skipped') c.skipped.push(t.name);
};

/**
 * Sorts the tests into the claimed profiles as the suite's report does: a test
 * belongs to a profile when each of its features is one of the profile's core
 * or extended features, and counts as extended there when any is not core. A
 * test the suite did not run for an unclaimed feature (not-supported) counts
 * nowhere, as in the suite's report.
 */
export function summarize(log: SuiteLog, profiles: readonly string[], claimed: readonly string[]): SuiteSummary {
  const out: ProfileSummary[] = [];
  const counted = new Set<string>();
  for (const name of profiles) {
    const p = PROFILE_FEATURES[name];
    if (!p) throw new Error(`profile ${name}: its features are not known here (test/conformance/suite-log.ts)`);
    const s: ProfileSummary = { name, core: empty(), extended: empty() };
    for (const t of log.tests) {
      if (t.result === 'not-supported' || t.features.length === 0) continue;
      if (!t.features.every((f) => p.core.includes(f) || p.extended(f))) continue;
      counted.add(t.name);
      add(t.features.some((f) => !p.core.includes(f)) ? s.extended : s.core, t);
    }
    out.push(s);
  }
  const core = new Set(profiles.flatMap((n) => PROFILE_FEATURES[n]?.core ?? []));
  const features = claimed
    .filter((f) => !core.has(f))
    .map((feature) => {
      const tests = empty();
      for (const t of log.tests) if (t.features.includes(feature)) add(tests, t);
      return { feature, tests, passes: tests.passed.length > 0 && tests.failed.length === 0 && tests.skipped.length === 0 };
    });
  const outsideProfiles = log.tests.filter((t) => t.result !== 'not-supported' && t.features.length > 0 && !counted.has(t.name));
  return { finished: log.finished, profiles: out, features, outsideProfiles, tests: log.tests, failures: log.failures, unfinished: log.started.filter((n) => !log.tests.some((t) => t.name === n)) };
}
