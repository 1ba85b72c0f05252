/**
 * docs/conformance/README.md: the tables of a run (core and extended tests
 * passed/failed/skipped per profile, per claimed feature and per test) next
 * to Cilium's and Istio's published reports, written from the suite's own
 * per-test verdicts (suite-log.ts) whether or not the suite wrote its YAML
 * report; and that report (the suite's `--report-output`, a
 * ConformanceReport of conformance/apis/v1) read back when it did.
 *
 *   const summary = summarize(parseSuiteLog(text), PROFILES, SUPPORTED_FEATURES);
 *   writeFileSync('docs/conformance/README.md', renderReadme(summary, meta));
 */
import { parse } from 'yaml';
import { z } from 'zod';
import { MeshdError } from '../../src/util/errors.js';
import type { Counts, SuiteSummary } from './suite-log.js';

const Statistics = z.object({ Passed: z.number().int(), Failed: z.number().int(), Skipped: z.number().int() });
const Status = z.object({
  result: z.string(),
  statistics: Statistics,
  failedTests: z.array(z.string()).optional(),
  skippedTests: z.array(z.string()).optional(),
});
const ReportSchema = z.object({
  apiVersion: z.string(),
  kind: z.literal('ConformanceReport'),
  date: z.string(),
  gatewayAPIVersion: z.string(),
  gatewayAPIChannel: z.string(),
  mode: z.string(),
  implementation: z.object({ organization: z.string(), project: z.string(), url: z.string(), version: z.string(), contact: z.array(z.string()) }),
  // null when no test ran (the suite's setup failed).
  profiles: z.array(
    z.object({
      name: z.string(),
      summary: z.string(),
      core: Status,
      extended: Status.extend({ supportedFeatures: z.array(z.string()).optional(), unsupportedFeatures: z.array(z.string()).optional() }).optional(),
    }),
  )
    .nullish()
    .transform((v) => v ?? []),
  succeededProvisionalTests: z.array(z.string()).optional(),
});
export type ConformanceReport = z.infer<typeof ReportSchema>;

/** Parses and validates a report; MESHD_CONFORMANCE_REPORT_INVALID names the field and the file. */
export function parseReport(text: string, file: string): ConformanceReport {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new MeshdError('MESHD_CONFORMANCE_REPORT_INVALID', `${file} is not YAML`, { kind: 'invalid', cause: e });
  }
  const r = ReportSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new MeshdError('MESHD_CONFORMANCE_REPORT_INVALID', `${file}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`, { kind: 'invalid' });
  }
  return r.data;
}

/**
 * Published reports meshd is compared with (GATEWAY-HTTP profile, Gateway
 * API v1.4.0, experimental channel), from the upstream repository's
 * conformance/reports/v1.4.0/ directory.
 */
export const PUBLISHED = [
  { name: 'Cilium 1.19.0-pre.2', corePassed: 33, coreTotal: 33, extendedPassed: 25, source: 'https://github.com/kubernetes-sigs/gateway-api/blob/main/conformance/reports/v1.4.0/cilium/experimental-v1.19.0-pre.2-default-report.yaml' },
  { name: 'Istio 1.28', corePassed: 33, coreTotal: 33, extendedPassed: 28, source: 'https://github.com/kubernetes-sigs/gateway-api/blob/main/conformance/reports/v1.4.0/istio-istio/1.28.0-default-report.yaml' },
] as const;

export interface ReadmeMeta {
  /** The command that produced the run. */
  command: string;
  /** meshd version and commit the run used. */
  meshdVersion: string;
  /** The suite's version and CRD channel. */
  gatewayAPIVersion: string;
  gatewayAPIChannel: string;
  /** When the run ended (ISO 8601). */
  date: string;
  /** The machine's load during the run (`uptime`'s averages), when it was a shared, loaded machine; undefined for a quiet run. */
  load?: string;
  /** The suite's report, when it wrote one (the run had --url and --contact): its file name next to the README. */
  report?: { file: string; report: ConformanceReport };
  /** Notes on the run, one line each. */
  notes: string[];
  /** Images the test node refused (no binary stands for them). */
  refusedImages: string[];
}

const total = (c: Counts) => c.passed.length + c.failed.length + c.skipped.length;
const cell = (c: Counts) => `${c.passed.length} / ${c.failed.length} / ${c.skipped.length}`;

/** The README of a full run, from the suite's per-test verdicts (and, when written, a link to its report). */
export function renderReadme(s: SuiteSummary, meta: ReadmeMeta): string {
  const lines: string[] = [];
  const md = (t: string) => t.replace(/`/g, "'").replace(/\|/g, '\\|');
  lines.push('# Gateway API conformance');
  lines.push('');
  lines.push(`The upstream suite \`sigs.k8s.io/gateway-api/conformance\` ${meta.gatewayAPIVersion} (${meta.gatewayAPIChannel} channel CRDs), run against meshd by \`${md(meta.command)}\`: a real kube-apiserver, etcd and kube-controller-manager, one meshd agent in Kubernetes mode with Envoy and \`gatewayAPI.enabled\`, and a test node (test/helpers/conformance-node.ts) that runs the suite's echo-basic backends in network namespaces wired by meshd-cni. The suite sends its requests from its own process to the Gateways' addresses. This page is generated (test/conformance/report.ts) from the suite's own per-test verdicts in its \`-test.v\` output, sorted into profiles, core and extended the way the suite's report sorts them.`);
  lines.push('');
  lines.push(`- meshd ${meta.meshdVersion}, run ended ${meta.date}`);
  lines.push(`- claimed profiles: ${s.profiles.map((p) => p.name).join(', ')}; extended features claimed in this run: ${s.features.length}`);
  if (!s.finished) lines.push('- **The run did not finish** (stopped, or the suite\'s time limit): the tests below are those with a verdict; the others are counted nowhere.');
  if (meta.load !== undefined) lines.push(`- **Development run** on a shared two-core machine under load (load average ${meta.load}): timing-sensitive tests can fail here for the load alone.`);
  lines.push('');
  lines.push('## The official report');
  lines.push('');
  if (meta.report) {
    lines.push(`[\`${meta.report.file}\`](${meta.report.file}) is the suite's own report of this run, unedited.`);
  } else {
    lines.push('The suite writes its own report (`gateway-api.yaml` here, for upstream submission) only with the implementation\'s URL and contact (`--url`, `--contact`), and refuses empty ones. The project has no public URL or contact yet: choosing them is a maintainer\'s decision, so this run wrote no report, and the tables below come from the suite\'s verdicts alone.');
  }
  lines.push('');
  lines.push('## Result (tests passed / failed / skipped)');
  lines.push('');
  lines.push('| Profile | Core | Extended |');
  lines.push('|---|---|---|');
  for (const p of s.profiles) lines.push(`| ${p.name} | ${cell(p.core)} | ${cell(p.extended)} |`);
  lines.push('');
  const passing = s.features.filter((f) => f.passes);
  lines.push(`Claimed extended features whose tests all passed: **${passing.length} of ${s.features.length}**.`);
  lines.push('');
  const http = s.profiles.find((p) => p.name === 'GATEWAY-HTTP');
  lines.push('## Next to published implementations (GATEWAY-HTTP)');
  lines.push('');
  lines.push('| Implementation | Gateway API | Core passed | Extended tests passed | Source |');
  lines.push('|---|---|---|---|---|');
  lines.push(http ? `| meshd ${meta.meshdVersion} | ${meta.gatewayAPIVersion} | ${http.core.passed.length}/${total(http.core)} | ${http.extended.passed.length} | this run |` : `| meshd ${meta.meshdVersion} | ${meta.gatewayAPIVersion} | not run | not run | this run |`);
  for (const p of PUBLISHED) lines.push(`| ${p.name} | v1.4.0 | ${p.corePassed}/${p.coreTotal} | ${p.extendedPassed} | [report](${p.source}) |`);
  lines.push('');
  lines.push('The published numbers are for Gateway API v1.4.0, whose suite has fewer tests than this one; they are the reports those projects submitted upstream, not runs on this machine. The target (issue 17) is every core test and at least 29 extended features.');
  lines.push('');
  lines.push('## Claimed extended features');
  lines.push('');
  lines.push('| Feature | Tests passed / failed / skipped | All passed |');
  lines.push('|---|---|---|');
  for (const f of s.features) lines.push(`| ${f.feature} | ${cell(f.tests)} | ${f.passes ? 'yes' : total(f.tests) === 0 ? 'no test ran' : '**no**'} |`);
  lines.push('');
  lines.push('## Tests');
  lines.push('');
  lines.push('| Test | Profile: level | Result |');
  lines.push('|---|---|---|');
  for (const t of s.tests) {
    if (t.result === 'not-supported') continue;
    const has = (c: Counts) => c.passed.includes(t.name) || c.failed.includes(t.name) || c.skipped.includes(t.name);
    const where = s.profiles.flatMap((p) => (has(p.core) ? [`${p.name}: core`] : has(p.extended) ? [`${p.name}: extended`] : []));
    const result = t.result === 'passed' ? 'passed' : t.result === 'failed' ? '**failed**' : `skipped${t.skipReason ? ` (${md(t.skipReason)})` : ''}`;
    lines.push(`| ${t.name} | ${where.length > 0 ? where.join(', ') : 'no claimed profile'} | ${result} |`);
  }
  lines.push('');
  const notRun = s.tests.filter((t) => t.result === 'not-supported');
  if (notRun.length > 0) {
    lines.push(`${notRun.length} more tests were not run: they rely on features meshd does not claim (the suite counts them nowhere): ${notRun.map((t) => t.name).join(', ')}.`);
    lines.push('');
  }
  const failed = s.tests.filter((t) => t.result === 'failed');
  // A failed assertion of a test or of one of its subtests (HTTPRouteRequestMirror/0_request_to_...).
  const firstFailure = (test: string) => s.failures.find((f) => f.test === test || (test !== '' && f.test.startsWith(`${test}/`)))?.message;
  lines.push('## Failed tests');
  lines.push('');
  const setup = firstFailure('');
  if (setup !== undefined) lines.push(`- **the suite's setup** (no test ran after it): ${md(setup).slice(0, 400)}`);
  if (failed.length === 0 && setup === undefined) lines.push(s.tests.length === 0 ? 'No test has a verdict.' : 'None.');
  for (const t of failed) {
    const why = firstFailure(t.name);
    lines.push(`- ${t.name} (${t.features.join(', ') || 'no features logged'})${why === undefined ? '' : `: ${md(why).slice(0, 400)}`}`);
  }
  lines.push('');
  if (s.unfinished.length > 0) {
    lines.push('## Tests without a verdict');
    lines.push('');
    lines.push('The run ended before `go test` printed these tests\' verdicts (it prints them when TestConformance ends). The suite\'s failed assertions among them:');
    lines.push('');
    for (const n of s.unfinished) {
      const why = s.failures.find((f) => f.test === n || f.test.startsWith(`${n}/`));
      lines.push(`- ${n}${why === undefined ? ': no failed assertion logged' : `: **failed assertion** ${md(why.message).slice(0, 300)}`}`);
    }
    lines.push('');
  }
  lines.push('## Notes');
  lines.push('');
  for (const n of meta.notes) lines.push(`- ${n}`);
  if (s.outsideProfiles.length > 0) lines.push(`- Tests that ran but belong to no claimed profile (the suite's report leaves them out): ${s.outsideProfiles.map((t) => `${t.name} (${t.result})`).join(', ')}.`);
  if (meta.refusedImages.length > 0) lines.push(`- The test node refused Pods of images no binary stands for: ${meta.refusedImages.join(', ')}.`);
  lines.push('- echo-basic is built from source (scripts/gateway-conformance.sh): the suite pins `sigs.k8s.io/gateway-api-conformance-images`, and when the module proxy does not serve it the same packages come from their last copy in `sigs.k8s.io/gateway-api/conformance` v1.6.3.');
  lines.push('- Secret and ConfigMap volumes are files in a per-pod directory; env values naming a path under a mount are rewritten to it (the processes share the host\'s mount namespace).');
  lines.push('');
  return lines.join('\n');
}
