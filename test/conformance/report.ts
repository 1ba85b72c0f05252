/**
 * The Gateway API conformance report (the suite's `--report-output`, a
 * ConformanceReport of conformance/apis/v1) read back, and the summary table
 * docs/conformance/README.md shows next to Cilium's and Istio's published
 * reports.
 *
 *   const report = parseReport(readFileSync(path, 'utf8'), path);
 *   writeFileSync('docs/conformance/README.md', renderReadme(report, meta));
 */
import { parse } from 'yaml';
import { z } from 'zod';
import { MeshdError } from '../../src/util/errors.js';

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
  /** The command that produced the report. */
  command: string;
  /** meshd version and commit the run used. */
  meshdVersion: string;
  /** True when the run is a development run (a noisy shared machine, or a Gateway API controller not yet complete). */
  developmentRun: boolean;
  /** Notes on the run (e.g. what the agent lacked), one line each. */
  notes: string[];
  /** Images the test node refused (no binary stands for them). */
  refusedImages: string[];
}

const cell = (s: { Passed: number; Failed: number; Skipped: number }) => `${s.Passed} / ${s.Failed} / ${s.Skipped}`;

export function renderReadme(report: ConformanceReport, meta: ReadmeMeta): string {
  const lines: string[] = [];
  lines.push('# Gateway API conformance');
  lines.push('');
  lines.push(`The upstream suite \`sigs.k8s.io/gateway-api/conformance\` ${report.gatewayAPIVersion} (${report.gatewayAPIChannel} channel), run against meshd by \`${meta.command.replace(/`/g, "'")}\`: a real kube-apiserver, etcd and kube-controller-manager, one meshd agent in Kubernetes mode, and a test node that runs the suite's echo-basic backends in network namespaces wired by meshd-cni. The suite sends its requests from its own process to the Gateways' addresses. [\`gateway-api.yaml\`](gateway-api.yaml) is the suite's report, unedited.`);
  lines.push('');
  if (meta.developmentRun) {
    lines.push('**Development run.** These numbers are from a development run, not a release: see the notes below for what the agent under test lacked.');
    lines.push('');
  }
  lines.push(`- meshd: ${meta.meshdVersion} (report: ${report.implementation.version}), run ${report.date}`);
  lines.push(`- mode: ${report.mode}`);
  lines.push('');
  lines.push('## Result (tests passed / failed / skipped)');
  lines.push('');
  if (report.profiles.length === 0) lines.push('No test ran: the suite failed in its setup (see the notes).', '');
  lines.push('| Profile | Core | Extended | Extended features claimed | Summary |');
  lines.push('|---|---|---|---|---|');
  for (const p of report.profiles) {
    lines.push(`| ${p.name} | ${cell(p.core.statistics)} | ${p.extended ? cell(p.extended.statistics) : '–'} | ${p.extended?.supportedFeatures?.length ?? 0} | ${p.summary} |`);
  }
  lines.push('');
  const http = report.profiles.find((p) => p.name === 'GATEWAY-HTTP');
  lines.push('## Next to published implementations (GATEWAY-HTTP)');
  lines.push('');
  lines.push('| Implementation | Gateway API | Core passed | Extended tests passed | Source |');
  lines.push('|---|---|---|---|---|');
  if (http) {
    const total = http.core.statistics.Passed + http.core.statistics.Failed + http.core.statistics.Skipped;
    lines.push(`| meshd ${meta.meshdVersion} | ${report.gatewayAPIVersion} | ${http.core.statistics.Passed}/${total} | ${http.extended?.statistics.Passed ?? 0} | this run |`);
  } else {
    lines.push(`| meshd ${meta.meshdVersion} | ${report.gatewayAPIVersion} | not run | not run | this run |`);
  }
  for (const p of PUBLISHED) lines.push(`| ${p.name} | v1.4.0 | ${p.corePassed}/${p.coreTotal} | ${p.extendedPassed} | [report](${p.source}) |`);
  lines.push('');
  lines.push('The published numbers are for Gateway API v1.4.0, whose suite has fewer tests than this one; they are the reports those projects submitted upstream, not runs on this machine. The target (issue 17) is every core test and at least 29 extended features.');
  lines.push('');
  const failed = report.profiles.flatMap((p) => [...(p.core.failedTests ?? []).map((t) => `${p.name} core: ${t}`), ...(p.extended?.failedTests ?? []).map((t) => `${p.name} extended: ${t}`)]);
  lines.push('## Failed tests');
  lines.push('');
  if (failed.length === 0) lines.push('None.');
  for (const f of failed) lines.push(`- ${f}`);
  lines.push('');
  const skipped = report.profiles.flatMap((p) => [...(p.core.skippedTests ?? []), ...(p.extended?.skippedTests ?? [])].map((t) => `${p.name}: ${t}`));
  if (skipped.length > 0) {
    lines.push('## Skipped tests');
    lines.push('');
    for (const s of skipped) lines.push(`- ${s}`);
    lines.push('');
  }
  if (failed.some((f) => f.includes(' extended: '))) {
    lines.push('A claimed feature (test/conformance/features.ts) whose extended tests failed above must pass, or be unclaimed, before a report is submitted upstream.');
    lines.push('');
  }
  lines.push('## Notes');
  lines.push('');
  for (const n of meta.notes) lines.push(`- ${n}`);
  if (meta.refusedImages.length > 0) lines.push(`- The test node refused Pods of images no binary stands for: ${meta.refusedImages.join(', ')}.`);
  lines.push('- echo-basic is built from source (scripts/gateway-conformance.sh): the suite pins `sigs.k8s.io/gateway-api-conformance-images`, and when the module proxy does not serve it the same packages come from their last copy in `sigs.k8s.io/gateway-api/conformance` v1.6.3.');
  lines.push('- Secret and ConfigMap volumes are files in a per-pod directory; env values naming a path under a mount are rewritten to it (the processes share the host\'s mount namespace).');
  lines.push('');
  return lines.join('\n');
}
