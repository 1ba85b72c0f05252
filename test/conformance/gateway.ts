/**
 * Runs the upstream Gateway API conformance suite against meshd on this
 * machine (`npm run test:gateway-conformance`, as root):
 *
 * 1. builds what is missing into the cache (scripts/k8s-binaries.sh: etcd,
 *    kube-apiserver, kube-controller-manager, kubectl; scripts/gateway-conformance.sh:
 *    the suite as a test binary and echo-basic);
 * 2. starts the cluster (test/helpers/conformance-world.ts): API server, etcd,
 *    controller-manager, meshd's CRDs and RBAC, the Gateway API CRDs
 *    (experimental channel, a superset of standard), the GatewayClass `meshd`,
 *    a CiliumLoadBalancerIPPool routed locally, one meshd agent in Kubernetes
 *    mode with Envoy and gatewayAPI.enabled, and the test node;
 * 3. runs the suite in its own process (in the cgroup the agent's socket LB
 *    serves, as a host process would be) with meshd's profiles and claimed
 *    features (test/conformance/features.ts), and the implementation fields;
 * 4. for a full run, writes docs/conformance/README.md from the suite's own
 *    per-test verdicts (its -test.v output, suite-log.ts), and, when the run
 *    has the implementation's --url and --contact, the suite writes its
 *    report to docs/conformance/gateway-api.yaml; tears everything down.
 *
 *   npm run test:gateway-conformance                       # the whole suite, writes docs/conformance/
 *   npm run test:gateway-conformance -- --run 'HTTPRouteSimpleSameNamespace|GatewayClass'
 *   npm run test:gateway-conformance -- --quick            # a few core tests
 *   npm run test:gateway-conformance -- --from-log /tmp/meshd-gwconf-XXXX/suite.log   # README again from a saved full run
 *
 * A subset (--run, --quick) writes its report to a temp file (printed)
 * unless --report names one, so it never replaces the recorded full run.
 * The suite writes a report only with the implementation's url and contact
 * (--url, --contact; it refuses empty ones). The project has none yet (a
 * maintainer's decision), so a full run without them writes the README's
 * tables alone; a subset run's result is the suite's PASS/FAIL lines and
 * exit code. Next to the suite's log the run leaves run.json (version, date,
 * load, refused images), which --from-log reads back.
 * Exit code: the suite's own (non-zero when a test failed).
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { describeError } from '../../src/util/errors.js';
import { repoPath } from '../../src/util/paths.js';
import { startConformanceWorld, GATEWAY_CLASS } from '../helpers/conformance-world.js';
import { PROFILES, SUPPORTED_FEATURES } from './features.js';
import { parseReport, renderReadme, type ConformanceReport, type ReadmeMeta } from './report.js';
import { parseSuiteLog, summarize } from './suite-log.js';

/** A few core tests that exercise a Gateway, an HTTPRoute and a backend end to end. */
const QUICK = '^(GatewayClassObservedGenerationBump|HTTPRouteSimpleSameNamespace|HTTPRouteMatching)$';
/** The LB IPAM pool the Gateways' addresses come from: TEST-NET-3, routed locally for the run. */
const LB_POOL = '203.0.113.0/24';

const usage = `usage: node dist/test/conformance/gateway.js [--run REGEX | --quick] [--report FILE] [--no-build] [--timeout MINUTES]
  --run REGEX     only the suite's tests whose name matches (go test -run TestConformance/REGEX)
  --quick         --run '${QUICK}'
  --report FILE   where the suite writes its report (default: docs/conformance/gateway-api.yaml for the full run, a temp file for a subset)
  --no-build      do not run the build scripts (the binaries must exist)
  --timeout MIN   the suite's -test.timeout in minutes (default 90)
  --url URL, --contact LIST   the implementation's url and contacts in the report (needed for a report;
                  package.json names no repository or homepage, so there is no default)
  --from-log FILE write docs/conformance/README.md from the saved suite log of a full run (and its run.json) and exit`;

const PackageJson = z.object({ version: z.string() });

function meshdVersion(): string {
  const pkg = PackageJson.parse(JSON.parse(readFileSync(repoPath('package.json'), 'utf8')));
  const git = spawnSync('git', ['describe', '--always', '--dirty', '--abbrev=12'], { cwd: repoPath(), encoding: 'utf8' });
  const rev = git.status === 0 ? git.stdout.trim() : '';
  return rev === '' ? pkg.version : `${pkg.version}+${rev}`;
}

/** The suite's version (scripts/gateway-api.sh pins it). */
function gatewayApiVersion(): string {
  const r = spawnSync('bash', [repoPath('scripts', 'gateway-api.sh'), '--version'], { encoding: 'utf8' });
  const v = r.stdout.trim();
  if (r.status !== 0 || v === '') throw new Error(`scripts/gateway-api.sh --version failed: ${r.stderr.trim()}`);
  return v;
}

function build(script: string): void {
  const r = spawnSync('bash', [repoPath('scripts', script)], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`scripts/${script} failed (exit ${r.status ?? r.signal})`);
}

/** What a run leaves next to the suite's log (run.json), for the README. */
const RunMeta = z.object({
  meshdVersion: z.string(),
  date: z.string(),
  load: z.string(),
  /** The 5-minute load average was above the core count. */
  loaded: z.boolean(),
  refusedImages: z.array(z.string()),
  notes: z.array(z.string()),
  /** The suite's report, when it wrote one. */
  report: z.string().nullable(),
});
type RunMeta = z.infer<typeof RunMeta>;

/** docs/conformance/README.md from a full run's suite log (suite-log.ts, report.ts). */
function writeReadme(text: string, run: RunMeta, logFile: string): void {
  const log = parseSuiteLog(text);
  let report: { file: string; report: ConformanceReport } | undefined;
  if (run.report !== null) report = { file: basename(run.report), report: parseReport(readFileSync(run.report, 'utf8'), run.report) };
  const meta: ReadmeMeta = {
    command: 'npm run test:gateway-conformance',
    meshdVersion: run.meshdVersion,
    gatewayAPIVersion: gatewayApiVersion(),
    gatewayAPIChannel: 'experimental',
    date: run.date,
    ...(run.loaded ? { load: run.load } : {}),
    ...(report ? { report } : {}),
    notes: run.notes,
    refusedImages: run.refusedImages,
  };
  writeFileSync(repoPath('docs', 'conformance', 'README.md'), `${renderReadme(summarize(log, PROFILES, log.supportedFeatures ?? SUPPORTED_FEATURES), meta)}\n`);
  process.stderr.write(`wrote docs/conformance/README.md from ${logFile} (${log.tests.length} tests with a verdict${log.finished ? '' : ', the run did not finish'})\n`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      run: { type: 'string' },
      quick: { type: 'boolean', default: false },
      report: { type: 'string' },
      'no-build': { type: 'boolean', default: false },
      timeout: { type: 'string', default: '90' },
      url: { type: 'string' },
      contact: { type: 'string' },
      'from-log': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  if (values['from-log'] !== undefined) {
    const logFile = values['from-log'];
    const run = RunMeta.parse(JSON.parse(readFileSync(join(dirname(logFile), 'run.json'), 'utf8')));
    writeReadme(readFileSync(logFile, 'utf8'), run, logFile);
    return 0;
  }
  const timeout = Number(values.timeout);
  if (!Number.isInteger(timeout) || timeout < 1) throw new Error(`--timeout: ${values.timeout} is not a whole number of minutes`);
  if (values.run !== undefined && values.quick) throw new Error('--run and --quick exclude each other');
  const filter = values.quick ? QUICK : values.run;
  if (filter !== undefined) new RegExp(filter); // a bad regex is refused here, before minutes of setup
  const full = filter === undefined;
  const identity = values.url !== undefined && values.contact !== undefined ? { url: values.url, contact: values.contact } : undefined;
  if ((values.url === undefined) !== (values.contact === undefined)) throw new Error('--url and --contact go together (the suite needs both for its report)');
  if (identity === undefined && values.report !== undefined) throw new Error('--report needs the implementation\'s --url and --contact (the suite refuses a report without them)');
  const scratch = mkdtempSync(join(tmpdir(), 'meshd-gwconf-'));
  const reportPath = identity === undefined ? undefined : (values.report ?? (full ? repoPath('docs', 'conformance', 'gateway-api.yaml') : join(scratch, 'gateway-api.yaml')));
  const version = meshdVersion();

  if (!values['no-build']) {
    build('k8s-binaries.sh');
    build('gateway-conformance.sh');
  }

  const cleanups: Array<() => Promise<void> | void> = [];
  const after = { after: (fn: () => Promise<void> | void) => void cleanups.push(fn) };
  const log = (line: string) => process.stderr.write(`${line}\n`);
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    log('interrupted: cleaning up');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let code = 1;
  try {
    const world = await startConformanceWorld(after, { nodeName: 'conformance', envoy: true, gatewayAPI: true, gatewayCrds: 'experimental', lbPool: LB_POOL, log });
    const notes: string[] = [];
    if (!world.gatewayApiEnabled) notes.push('The agent under test has no `gatewayAPI.enabled` key: it ran without a Gateway API controller, so nothing programmed the Gateways.');
    const suiteLog = join(scratch, 'suite.log');
    const args = [
      '-test.v',
      `-test.timeout=${timeout}m`,
      `-test.run=TestConformance${filter === undefined ? '' : `/(${filter})`}`,
      `--gateway-class=${GATEWAY_CLASS}`,
      `--conformance-profiles=${PROFILES.join(',')}`,
      `--supported-features=${SUPPORTED_FEATURES.join(',')}`,
      ...(reportPath === undefined || identity === undefined
        ? []
        : [`--report-output=${reportPath}`, '--organization=meshd', '--project=meshd', `--url=${identity.url}`, `--version=${version}`, `--contact=${identity.contact}`]),
      '--cleanup-base-resources=true',
    ];
    if (reportPath !== undefined) mkdirSync(join(reportPath, '..'), { recursive: true });
    log(`running the suite: conformance.test ${args.join(' ')}`);
    // Into the agent's host cgroup first, then exec: the suite's connections are a host process's, which the socket LB serves.
    const child = spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', world.hostCgroup, join(world.binDir, 'conformance.test'), ...args], {
      cwd: scratch,
      env: { ...process.env, KUBECONFIG: world.kube.kubeconfigPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = createWriteStream(suiteLog);
    for (const s of [child.stdout, child.stderr]) {
      s.on('data', (c: Buffer) => {
        out.write(c);
        for (const line of c.toString('utf8').split('\n')) if (/^\s*--- (PASS|FAIL|SKIP)|^(PASS|FAIL|ok)\b/.test(line)) process.stdout.write(`${line}\n`);
      });
    }
    const stop = setInterval(() => {
      if (stopping && child.exitCode === null) child.kill('SIGTERM');
    }, 500);
    const [exitCode, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    clearInterval(stop);
    out.end();
    code = exitCode ?? (signal === null ? 1 : 128);
    log(`the suite exited ${exitCode ?? signal}; its log: ${suiteLog}`);
    const run: RunMeta = {
      meshdVersion: version,
      date: new Date().toISOString(),
      load: loadavg().map((l) => l.toFixed(1)).join(', '),
      loaded: (loadavg()[1] ?? 0) > cpus().length,
      refusedImages: world.node.refusedImages(),
      notes,
      report: reportPath !== undefined && existsSync(reportPath) ? reportPath : null,
    };
    writeFileSync(join(scratch, 'run.json'), `${JSON.stringify(run, null, 2)}\n`);
    if (reportPath === undefined) log('no suite report (no --url and --contact)');
    if (!full || values.report !== undefined) return code;
    writeReadme(readFileSync(suiteLog, 'utf8'), run, suiteLog);
    if (run.report === null) return code;
    const report = parseReport(readFileSync(run.report, 'utf8'), run.report);
    for (const p of report.profiles) {
      log(`${p.name}: core ${p.core.statistics.Passed} passed, ${p.core.statistics.Failed} failed, ${p.core.statistics.Skipped} skipped; extended ${p.extended ? `${p.extended.statistics.Passed} passed, ${p.extended.statistics.Failed} failed, ${p.extended.statistics.Skipped} skipped` : '–'}`);
    }
    return code;
  } finally {
    for (const fn of cleanups) {
      try {
        await fn();
      } catch (e) {
        log(`cleanup: ${describeError(e)}`);
      }
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`gateway-conformance: ${describeError(e)}\n`);
    process.exit(1);
  },
);
