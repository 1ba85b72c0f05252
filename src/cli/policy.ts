/**
 * `meshd policy` — policy tools that need no agent.
 *
 *   meshd policy validate FILE|DIR…              every problem with file, document index and field path; exit 1 if any
 *   meshd policy trace --scenario FILE [-o json]  what the engine decides for the scenario's flows
 *   meshd policy trace --scenario FILE --check   also compare with each flow's `expect`; exit 1 on a difference
 */
import { loadPolicyPath } from '../policy/api/loader.js';
import { formatProblem, PolicyValidationError } from '../policy/api/problem.js';
import { checkExpectations, formatTrace, loadScenarioFile, traceScenario } from '../policy/trace.js';

const USAGE = [
  'Usage:',
  '  meshd policy validate FILE|DIR...',
  '  meshd policy trace --scenario FILE [-o json] [--check]',
].join('\n');

export async function runPolicy(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'validate') return validate(rest);
  if (sub === 'trace') return trace(rest);
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

function trace(args: string[]): number {
  let scenario: string | undefined;
  let json = false;
  let check = false;
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
    else {
      process.stderr.write(`meshd policy trace: unexpected argument "${a ?? ''}"\n${USAGE}\n`);
      return 2;
    }
  }
  if (scenario === undefined) {
    process.stderr.write('meshd policy trace: without --scenario, trace asks the running agent, which this build does not include yet\n');
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
  const result = traceScenario(loaded);
  if (json) process.stdout.write(`${JSON.stringify({ flows: result.flows, problems: result.problems })}\n`);
  else process.stdout.write(`${formatTrace(result)}\n`);
  for (const p of result.problems) if (json) process.stderr.write(`${formatProblem(p)}\n`);
  if (check) {
    const diffs = checkExpectations(loaded, result);
    for (const d of diffs) process.stderr.write(`mismatch: ${d}\n`);
    if (diffs.length > 0) return 1;
  }
  return result.flows.some((f) => f.error !== undefined) ? 1 : 0;
}
