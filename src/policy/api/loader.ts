/**
 * Reads policy manifests: multi-document YAML or JSON (a JSON array or a
 * Kubernetes `List` works too). Every document is checked on its own by its
 * kind's module (src/k8s: zod schema, strict, then the semantics of
 * validate.ts). A bad document yields problems with file, document index and
 * field path and never disturbs the others.
 *
 *   const { policies, problems } = loadPolicyText(text, 'policies.yaml');
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ciliumClusterwideNetworkPolicy, type CiliumClusterwideNetworkPolicy } from '../../k8s/cilium-clusterwide-network-policy.js';
import { ciliumNetworkPolicy, type CiliumNetworkPolicy } from '../../k8s/cilium-network-policy.js';
import { networkPolicy, type NetworkPolicy } from '../../k8s/network-policy.js';
import type { ParseResult } from '../../k8s/problem.js';
import { formatPath } from './problem.js';
import type { PathSegment, PolicyProblem } from './problem.js';
import type { PolicyDocument } from './schema.js';

export interface LoadedPolicy {
  document: PolicyDocument;
  file?: string;
  index: number;
}

export interface LoadResult {
  policies: LoadedPolicy[];
  problems: PolicyProblem[];
}

export type PolicyObject = NetworkPolicy | CiliumNetworkPolicy | CiliumClusterwideNetworkPolicy;

/** The engine's view of a parsed policy object. */
export function policyDocument(o: PolicyObject): PolicyDocument {
  switch (o.kind) {
    case 'NetworkPolicy':
      return { kind: o.kind, doc: o };
    case 'CiliumNetworkPolicy':
      return { kind: o.kind, doc: o };
    case 'CiliumClusterwideNetworkPolicy':
      return { kind: o.kind, doc: o };
  }
}

/** Checks one parsed document (plain data) with its kind's module (src/k8s). */
export function checkDocument(data: unknown, file: string | undefined, index: number, base: PathSegment[] = []): { policy?: LoadedPolicy; problems: PolicyProblem[] } {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return { problems: [{ file, document: index, path: formatPath(base), code: 'WRONG_TYPE', message: 'a policy document must be an object' }] };
  }
  const kind = 'kind' in data ? data.kind : undefined;
  let r: ParseResult<PolicyObject>;
  if (kind === 'CiliumNetworkPolicy') r = ciliumNetworkPolicy.parse(data);
  else if (kind === 'CiliumClusterwideNetworkPolicy') r = ciliumClusterwideNetworkPolicy.parse(data);
  else if (kind === 'NetworkPolicy') r = networkPolicy.parse(data);
  else {
    return {
      problems: [
        {
          file,
          document: index,
          path: formatPath([...base, 'kind']),
          code: 'UNKNOWN_KIND',
          message: `unsupported kind ${JSON.stringify(kind)} (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, NetworkPolicy)`,
        },
      ],
    };
  }
  if (!r.ok) return { problems: r.problems.map((p) => ({ file, document: index, path: formatPath([...base, ...p.path]), code: p.code, message: p.message })) };
  return { policy: { document: policyDocument(r.value), file, index }, problems: [] };
}

/** Checks a list of already-parsed documents (e.g. a scenario's `policies`). */
export function loadPolicyDocuments(docs: readonly unknown[], file?: string, base: PathSegment[] = []): LoadResult {
  const result: LoadResult = { policies: [], problems: [] };
  docs.forEach((d, i) => {
    const r = checkDocument(d, file, i, [...base, i]);
    if (r.policy) result.policies.push(r.policy);
    result.problems.push(...r.problems);
  });
  return result;
}

export function loadPolicyText(text: string, file?: string): LoadResult {
  const result: LoadResult = { policies: [], problems: [] };
  const docs = parseAllDocuments(text);
  let index = 0;
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    const i = index++;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) result.problems.push({ file, document: i, path: '(document)', code: 'YAML_SYNTAX', message: e.message });
      continue;
    }
    const data: unknown = doc.toJS();
    if (data === null || data === undefined) continue;
    const items: Array<[unknown, PathSegment[]]> = [];
    if (Array.isArray(data)) data.forEach((d, j) => items.push([d, [j]]));
    else if (typeof data === 'object' && 'kind' in data && data.kind === 'List' && 'items' in data && Array.isArray(data.items)) {
      data.items.forEach((d: unknown, j: number) => items.push([d, ['items', j]]));
    } else items.push([data, []]);
    for (const [d, base] of items) {
      const r = checkDocument(d, file, i, base);
      if (r.policy) result.policies.push(r.policy);
      result.problems.push(...r.problems);
    }
  }
  return result;
}

export function loadPolicyFile(file: string): LoadResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e: unknown) {
    const msg = e instanceof Error ? e.message : String(e);
    return { policies: [], problems: [{ file, path: '(file)', code: 'YAML_SYNTAX', message: `cannot read: ${msg}` }] };
  }
  return loadPolicyText(text, file);
}

/** Policy files under a directory (recursively): *.yaml, *.yml, *.json, sorted by path. */
export function policyFilesIn(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...policyFilesIn(p));
    else if (/\.(ya?ml|json)$/.test(name)) out.push(p);
  }
  return out;
}

/** Loads a file, or every policy file under a directory (the agent's manifest directory, `validate DIR`). */
export function loadPolicyPath(path: string): LoadResult {
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    // Not there: loadPolicyFile reports it as a problem of that path.
  }
  if (!isDir) return loadPolicyFile(path);
  const result: LoadResult = { policies: [], problems: [] };
  for (const f of policyFilesIn(path)) {
    const r = loadPolicyFile(f);
    result.policies.push(...r.policies);
    result.problems.push(...r.problems);
  }
  return result;
}

/** The name a policy contributes under: "namespace/name", or "name" for clusterwide policies. */
export function policyName(d: PolicyDocument): string {
  if (d.kind === 'CiliumClusterwideNetworkPolicy') return d.doc.metadata.name;
  return `${d.doc.metadata.namespace ?? 'default'}/${d.doc.metadata.name}`;
}

/** Unique key of a policy object: kind plus its name. */
export function policyKey(d: PolicyDocument): string {
  return `${d.kind}/${policyName(d)}`;
}
