/**
 * `meshd policy` — policy tools, offline or against the running agent.
 *
 *   meshd policy validate FILE|DIR…                every problem with file, document index and field path; exit 1 if any
 *                                                  (other Kubernetes objects in the files are listed as skipped)
 *   meshd policy trace --scenario FILE [-o json]   what the engine decides for the scenario's flows
 *   meshd policy trace --scenario FILE --check     also compare with each flow's `expect`; exit 1 on a difference
 *   meshd policy trace --scenario FILE --dump -o json   also print every endpoint's policy and the ipcache
 *   meshd policy trace --flows FILE [-o json]      the running agent judges FILE's flows against its live state
 *   meshd policy get [--endpoint ID] [-o json]     the running agent's policies and endpoint policies
 */
import { readFileSync } from 'node:fs';
import { loadPolicyPath, type LoadResult } from '../policy/api/loader.js';
import { formatProblem, PolicyValidationError, type PolicyProblem } from '../policy/api/problem.js';
import { apiRoutes } from '../api/index.js';
import type { PolicyEntryJson } from '../api/policy.js';
import { MeshdError } from '../util/errors.js';
import { callApi } from './api-client.js';
import { command, UsageError, type CommandGroup, type Formatter, type ParsedArgs } from './args.js';
import { table } from './output.js';
import { buildScenarioEngine, checkExpectations, formatTrace, loadScenarioFile, traceFlow } from '../policy/trace.js';
import type { EndpointPolicy, IpcacheEntry } from '../policy/types.js';

function formatEntry(e: PolicyEntryJson): string {
  const port = e.port === 0 ? '*' : e.port === e.endPort ? String(e.port) : `${e.port}-${e.endPort}`;
  const l7 = e.l7 ? ` ${e.l7.kind}${JSON.stringify(e.l7.rules)}` : '';
  return `    ${String(e.remoteIdentity === 0 ? '*' : e.remoteIdentity).padStart(9)} proto=${e.protocol === 0 ? '*' : e.protocol} port=${port} ${e.verdict}${l7}  [${e.derivedFrom.join(', ')}]`;
}

function formatDump(d: { endpoints?: EndpointPolicy[]; ipcache?: IpcacheEntry[] }): string {
  const lines: string[] = [];
  for (const p of d.endpoints ?? []) {
    lines.push(`endpoint ${p.endpointId} identity ${p.identity} revision ${p.revision}`);
    for (const dir of ['ingress', 'egress'] as const) {
      lines.push(`  ${dir}${p[dir].defaultDeny ? ' (default deny)' : ''}`);
      for (const e of p[dir].entries) lines.push(formatEntry(e));
    }
  }
  lines.push('ipcache');
  for (const c of d.ipcache ?? []) lines.push(`  ${c.prefix.padEnd(20)} ${c.identity}`);
  return lines.join('\n');
}

const traceOptions = {
  scenario: { type: 'string', value: 'FILE', help: 'offline: a scenario file (policies, endpoints, services and flows) judged by a fresh engine' },
  flows: { type: 'string', value: 'FILE', help: "live: the running agent judges FILE's flows (scenario format, only `flows` is read)" },
  check: { type: 'boolean', help: "offline: compare with each flow's `expect`; exit 1 on a difference" },
  dump: { type: 'boolean', help: "offline: also print every endpoint's policy and the ipcache" },
} as const;

export const policy: CommandGroup = {
  name: 'policy',
  summary: 'validate policy files; trace what the engine decides for a scenario, offline or in the running agent',
  subcommands: [
    command(
      {
        name: 'policy validate',
        summary: 'validate policy files; every problem with file, document index and field path (exit 1 if any); other objects are skipped',
        args: 'FILE|DIR...',
        positionals: { min: 1, max: Infinity },
        options: {},
        output: true,
      },
      (args, io) => validate(args, io.out),
    ),
    command(
      {
        name: 'policy trace',
        summary: 'what the policy engine decides for flows: offline (--scenario) or in the running agent (--flows)',
        options: traceOptions,
        output: true,
        agent: true,
        notes: ['Give exactly one of --scenario and --flows; --check and --dump apply to --scenario.'],
      },
      async (args, io) => {
        const scenario = args.string('scenario');
        const flows = args.string('flows');
        if ((scenario === undefined) === (flows === undefined)) throw new UsageError('meshd policy trace: give --scenario FILE (offline) or --flows FILE (the running agent); see "meshd policy trace --help"');
        if (flows !== undefined) return traceLive(args, flows, io.out);
        return trace(args, scenario ?? '', io.out, io.err);
      },
    ),
    command(
      {
        name: 'policy get',
        summary: "the running agent's policies (enforced or rejected) and computed endpoint policies",
        options: { endpoint: { type: 'string', value: 'ID', help: 'only this endpoint (namespace/name)' } },
        output: true,
        agent: true,
      },
      async (args, io) => {
        const ep = args.string('endpoint');
        const v = await callApi(args.apiSocket, apiRoutes.policy, { query: ep === undefined ? {} : { endpoint: ep } });
        const dir = (d: { defaultDeny: boolean; entries: unknown[] }) => `${d.defaultDeny ? 'deny by default' : 'allow by default'}, ${d.entries.length} entries`;
        io.out(
          args.format(v, () =>
            [
              table(['POLICY', 'STATE', 'FILE', 'PROBLEMS'], v.policies.map((p) => [p.key, p.state, p.origin, p.problems.map((x) => `${x.path}: ${x.message}`).join('; ')])),
              '',
              table(['ENDPOINT', 'IDENTITY', 'REVISION', 'INGRESS', 'EGRESS'], v.endpointPolicies.map((e) => [e.endpointId, e.identity, e.revision, dir(e.ingress), dir(e.egress)])),
            ].join('\n'),
          ),
        );
        return 0;
      },
    ),
  ],
};

/**
 * Policies and CiliumCIDRGroups are checked; other Kubernetes objects in the same files (Namespaces,
 * Deployments, … as Cilium's examples have) are listed as skipped and do not fail the run. Warnings
 * (DEPRECATED_FIELD) are printed and do not fail it either.
 */
function validate(args: Formatter & { positionals: readonly string[] }, out: (s: string) => void): number {
  const all: Pick<LoadResult, 'problems' | 'warnings' | 'skipped'> = { problems: [], warnings: [], skipped: [] };
  let valid = 0;
  let cidrGroups = 0;
  for (const f of args.positionals) {
    const r = loadPolicyPath(f);
    valid += r.policies.length;
    cidrGroups += r.cidrGroups.length;
    all.problems.push(...r.problems);
    all.warnings.push(...r.warnings);
    all.skipped.push(...r.skipped);
  }
  const { problems, warnings, skipped } = all;
  const n = problems.length;
  const plural = (k: number, one: string, many: string): string => `${k} ${k === 1 ? one : many}`;
  const text = (): string => {
    const extra = [
      cidrGroups > 0 ? plural(cidrGroups, 'CIDR group', 'CIDR groups') : '',
      skipped.length > 0 ? `${plural(skipped.length, 'other object', 'other objects')} skipped` : '',
      warnings.length > 0 ? plural(warnings.length, 'warning', 'warnings') : '',
    ].filter(Boolean);
    return [
      ...problems.map(formatProblem),
      ...warnings.map((w: PolicyProblem) => `warning: ${formatProblem(w)}`),
      ...skipped.map((o) => `skipped: ${o.file ? `${o.file} ` : ''}document ${o.document}${o.path === '(document)' ? '' : ` ${o.path}`}: ${o.kind}${o.name !== undefined ? ` ${o.name}` : ''} (${o.apiVersion}) is not a policy`),
      `${plural(valid, 'valid policy', 'valid policies')}, ${plural(n, 'problem', 'problems')}${extra.length > 0 ? `; ${extra.join(', ')}` : ''}`,
    ].join('\n');
  };
  out(args.format({ valid, cidrGroups, problems, warnings, skipped }, text));
  return n > 0 ? 1 : 0;
}

async function trace(args: ParsedArgs<typeof traceOptions>, scenario: string, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  let loaded;
  try {
    loaded = loadScenarioFile(scenario);
  } catch (e: unknown) {
    if (!(e instanceof PolicyValidationError)) throw e;
    for (const p of e.problems) err(`${formatProblem(p)}\n`);
    return 1;
  }
  const { engine, problems } = await buildScenarioEngine(loaded);
  const result = { flows: loaded.scenario.flows.map((f) => traceFlow(engine, loaded.scenario, f)), problems };
  const dump = args.flag('dump');
  const extra = dump ? { endpoints: engine.endpointPolicies(), ipcache: [...engine.ipcache()] } : {};
  out(args.format({ flows: result.flows, problems: result.problems, ...extra }, () => `${formatTrace(result)}${dump ? `\n${formatDump(extra)}` : ''}`));
  if (args.output !== 'text') for (const p of result.problems) err(`${formatProblem(p)}\n`);
  if (args.flag('check')) {
    const diffs = checkExpectations(loaded, result);
    for (const d of diffs) err(`mismatch: ${d}\n`);
    if (diffs.length > 0) return 1;
  }
  return result.flows.some((f) => f.error !== undefined) ? 1 : 0;
}

/** `meshd policy trace --flows FILE`: the running agent's engine judges the flows. */
async function traceLive(args: ParsedArgs<typeof traceOptions>, file: string, out: (s: string) => void): Promise<number> {
  if (args.flag('check') || args.flag('dump')) throw new UsageError('meshd policy trace: --check and --dump apply to --scenario only; see "meshd policy trace --help"');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new MeshdError('MESHD_CLI_INPUT_UNREADABLE', `cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`, { kind: 'invalid', cause: e });
  }
  const result = await callApi(args.apiSocket, apiRoutes.policyTrace, { body: { scenario: text } });
  out(args.format(result, () => formatTrace({ flows: result.flows, problems: [] })));
  return result.flows.some((f) => f.error !== undefined) ? 1 : 0;
}
