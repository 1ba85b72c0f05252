/**
 * `meshd policy` — policy tools, offline or against the running agent.
 *
 *   meshd policy validate FILE|DIR…              every problem with file, document index and field path; exit 1 if any
 *   meshd policy trace --scenario FILE [-o json]  what the engine decides for the scenario's flows
 *   meshd policy trace --scenario FILE --check   also compare with each flow's `expect`; exit 1 on a difference
 *   meshd policy trace --scenario FILE --dump -o json   also print every endpoint's policy and the ipcache
 *   meshd policy trace --flows FILE [-o json]     the running agent judges FILE's flows against its live state
 *   meshd policy get [--endpoint ID] [-o json]    the running agent's policies and endpoint policies
 */
import { readFileSync } from 'node:fs';
import { loadPolicyPath } from '../policy/api/loader.js';
import { formatProblem, PolicyValidationError } from '../policy/api/problem.js';
import { apiGet, apiPost, apiSocket, outputJson, table } from './api-client.js';
import type { TraceResult } from '../policy/trace.js';
import { buildScenarioEngine, checkExpectations, formatTrace, loadScenarioFile, traceFlow } from '../policy/trace.js';
import type { EndpointPolicy, IpcacheEntry, PolicyEntry } from '../policy/types.js';

function formatEntry(e: PolicyEntry): string {
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

const USAGE = [
  'Usage:',
  '  meshd policy validate FILE|DIR...',
  '  meshd policy trace --scenario FILE [-o json] [--check] [--dump]   (offline)',
  '  meshd policy trace --flows FILE [-o json] [--api-socket PATH]      (the running agent; FILE in the scenario format, only `flows` is read)',
  '  meshd policy get [--endpoint ID] [-o json] [--api-socket PATH]     (the running agent)',
].join('\n');

export async function runPolicy(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'validate') return validate(rest);
  if (sub === 'trace') return rest.some((a) => a === '--flows' || a.startsWith('--flows=')) ? traceLive(rest) : trace(rest);
  if (sub === 'get') return getLive(rest);
  process.stderr.write(`${sub === undefined ? '' : `meshd policy: unknown subcommand "${sub}"\n`}${USAGE}\n`);
  return 2;
}

function validate(files: string[]): number {
  if (files.length === 0) {
    process.stderr.write(`meshd policy validate: no files given\n${USAGE}\n`);
    return 2;
  }
  let problems = 0;
  let ok = 0;
  for (const f of files) {
    const r = loadPolicyPath(f);
    ok += r.policies.length;
    problems += r.problems.length;
    for (const p of r.problems) process.stdout.write(`${formatProblem(p)}\n`);
  }
  process.stdout.write(`${ok} valid polic${ok === 1 ? 'y' : 'ies'}, ${problems} problem${problems === 1 ? '' : 's'}\n`);
  return problems > 0 ? 1 : 0;
}

async function trace(args: string[]): Promise<number> {
  let scenario: string | undefined;
  let json = false;
  let check = false;
  let dump = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--scenario') scenario = args[++i];
    else if (a?.startsWith('--scenario=')) scenario = a.slice('--scenario='.length);
    else if (a === '-o' || a === '--output') {
      const v = args[++i];
      if (v !== 'json' && v !== 'text') {
        process.stderr.write(`meshd policy trace: -o takes json or text\n`);
        return 2;
      }
      json = v === 'json';
    } else if (a === '--check') check = true;
    else if (a === '--dump') dump = true;
    else {
      process.stderr.write(`meshd policy trace: unexpected argument "${a ?? ''}"\n${USAGE}\n`);
      return 2;
    }
  }
  if (scenario === undefined) {
    process.stderr.write(`meshd policy trace: give --scenario FILE (offline) or --flows FILE (the running agent)\n${USAGE}\n`);
    return 2;
  }
  let loaded;
  try {
    loaded = loadScenarioFile(scenario);
  } catch (e: unknown) {
    if (e instanceof PolicyValidationError) {
      for (const p of e.problems) process.stderr.write(`${formatProblem(p)}\n`);
      return 1;
    }
    process.stderr.write(`meshd policy trace: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  const { engine, problems } = await buildScenarioEngine(loaded);
  const result = { flows: loaded.scenario.flows.map((f) => traceFlow(engine, loaded.scenario, f)), problems };
  const extra = dump ? { endpoints: engine.endpointPolicies(), ipcache: engine.ipcache() } : {};
  if (json) process.stdout.write(`${JSON.stringify({ flows: result.flows, problems: result.problems, ...extra })}\n`);
  else {
    process.stdout.write(`${formatTrace(result)}\n`);
    if (dump) process.stdout.write(`${formatDump(extra)}\n`);
  }
  for (const p of result.problems) if (json) process.stderr.write(`${formatProblem(p)}\n`);
  if (check) {
    const diffs = checkExpectations(loaded, result);
    for (const d of diffs) process.stderr.write(`mismatch: ${d}\n`);
    if (diffs.length > 0) return 1;
  }
  return result.flows.some((f) => f.error !== undefined) ? 1 : 0;
}

function flagValue(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`${name}=`));
  return eq?.slice(name.length + 1);
}

/** `meshd policy trace --flows FILE`: the running agent's engine judges the flows. */
async function traceLive(args: string[]): Promise<number> {
  const file = flagValue(args, '--flows');
  if (!file) {
    process.stderr.write(`meshd policy trace: --flows needs a file\n${USAGE}\n`);
    return 2;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    process.stderr.write(`meshd policy trace: ${file}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  const result = (await apiPost(apiSocket(args), '/v1/policy/trace', { scenario: text })) as TraceResult;
  if (outputJson(args)) process.stdout.write(`${JSON.stringify({ flows: result.flows })}\n`);
  else process.stdout.write(`${formatTrace({ flows: result.flows, problems: [] })}\n`);
  return result.flows.some((f) => f.error !== undefined) ? 1 : 0;
}

/** `meshd policy get`: the policies the agent holds (enforced or rejected) and the computed endpoint policies. */
async function getLive(args: string[]): Promise<number> {
  const ep = flagValue(args, '--endpoint');
  const v = (await apiGet(apiSocket(args), `/v1/policy${ep ? `?endpoint=${encodeURIComponent(ep)}` : ''}`)) as {
    policies: Array<{ key: string; origin: string; state: string; problems: Array<{ path: string; message: string }> }>;
    endpointPolicies: Array<{ endpointId: string; identity: number; revision: number; ingress: { defaultDeny: boolean; entries: unknown[] }; egress: { defaultDeny: boolean; entries: unknown[] } }>;
  };
  if (outputJson(args)) {
    process.stdout.write(`${JSON.stringify(v)}\n`);
    return 0;
  }
  process.stdout.write(`${table(['POLICY', 'STATE', 'FILE', 'PROBLEMS'], v.policies.map((p) => [p.key, p.state, p.origin, p.problems.map((x) => `${x.path}: ${x.message}`).join('; ')]))}\n\n`);
  process.stdout.write(
    `${table(
      ['ENDPOINT', 'IDENTITY', 'REVISION', 'INGRESS', 'EGRESS'],
      v.endpointPolicies.map((e) => [e.endpointId, e.identity, e.revision, `${e.ingress.defaultDeny ? 'deny by default' : 'allow by default'}, ${e.ingress.entries.length} entries`, `${e.egress.defaultDeny ? 'deny by default' : 'allow by default'}, ${e.egress.entries.length} entries`]),
    )}\n`,
  );
  return 0;
}
