/**
 * Reads policy manifests: multi-document YAML or JSON (a JSON array or a
 * Kubernetes `List` works too). Every document is checked on its own by its
 * kind's module (src/k8s: zod schema, strict, then the semantics of
 * validate.ts). A bad document yields problems with file, document index and
 * field path and never disturbs the others. CiliumCIDRGroups (which policies
 * reference) are checked and returned beside the policies; other Kubernetes
 * objects in the same manifest (Namespaces, Deployments, ServiceAccounts, as
 * Cilium's examples have) are listed as skipped, except kinds that look like
 * policies meshd does not have (`*Policy` of cilium.io or networking.k8s.io),
 * which are problems: a policy must never be silently ignored.
 *
 *   const { policies, cidrGroups, skipped, problems, warnings } = loadPolicyText(text, 'policies.yaml');
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ciliumCidrGroup, type CiliumCidrGroup } from '../../k8s/cilium-cidr-group.js';
import { ciliumClusterwideNetworkPolicy, type CiliumClusterwideNetworkPolicy } from '../../k8s/cilium-clusterwide-network-policy.js';
import { ciliumNetworkPolicy, type CiliumNetworkPolicy } from '../../k8s/cilium-network-policy.js';
import { networkPolicy, type NetworkPolicy } from '../../k8s/network-policy.js';
import type { ParseResult, ResourceProblem } from '../../k8s/problem.js';
import { formatPath } from './problem.js';
import type { PathSegment, PolicyProblem } from './problem.js';
import type { PolicyDocument } from './schema.js';
import { documentWarnings } from './validate.js';

export interface LoadedPolicy {
  document: PolicyDocument;
  file?: string;
  index: number;
}

export interface LoadedCidrGroup {
  group: CiliumCidrGroup;
  file?: string;
  index: number;
}

/** A Kubernetes object of another kind found among the policies: not checked, only listed. */
export interface SkippedObject {
  file?: string;
  document: number;
  path: string;
  apiVersion: string;
  kind: string;
  name?: string;
}

export interface LoadResult {
  policies: LoadedPolicy[];
  cidrGroups: LoadedCidrGroup[];
  skipped: SkippedObject[];
  problems: PolicyProblem[];
  /** Problems that do not make a policy invalid (code DEPRECATED_FIELD). */
  warnings: PolicyProblem[];
}

function emptyResult(): LoadResult {
  return { policies: [], cidrGroups: [], skipped: [], problems: [], warnings: [] };
}

function merge(into: LoadResult, r: LoadResult): void {
  into.policies.push(...r.policies);
  into.cidrGroups.push(...r.cidrGroups);
  into.skipped.push(...r.skipped);
  into.problems.push(...r.problems);
  into.warnings.push(...r.warnings);
}

/** A kind that names a network policy meshd has no module for: refused rather than skipped. */
function isPolicyLikeKind(apiVersion: string, kind: string): boolean {
  const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
  return /Polic(y|ies)$/.test(kind) && (group === 'cilium.io' || group.endsWith('networking.k8s.io'));
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
export function checkDocument(data: unknown, file: string | undefined, index: number, base: PathSegment[] = []): LoadResult {
  const result = emptyResult();
  const problem = (path: PathSegment[], code: PolicyProblem['code'], message: string): LoadResult => {
    result.problems.push({ file, document: index, path: formatPath(path), code, message });
    return result;
  };
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return problem(base, 'WRONG_TYPE', 'a policy document must be an object');
  const kind = 'kind' in data ? data.kind : undefined;
  const apiVersion = 'apiVersion' in data ? data.apiVersion : undefined;
  const located = (problems: ResourceProblem[]): PolicyProblem[] =>
    problems.map((p) => ({ file, document: index, path: formatPath([...base, ...p.path]), code: p.code, message: p.message }));
  if (kind === 'CiliumCIDRGroup') {
    const g = ciliumCidrGroup.parse(data);
    if (g.ok) result.cidrGroups.push({ group: g.value, file, index });
    else result.problems.push(...located(g.problems));
    return result;
  }
  let r: ParseResult<PolicyObject>;
  if (kind === 'CiliumNetworkPolicy') r = ciliumNetworkPolicy.parse(data);
  else if (kind === 'CiliumClusterwideNetworkPolicy') r = ciliumClusterwideNetworkPolicy.parse(data);
  else if (kind === 'NetworkPolicy') r = networkPolicy.parse(data);
  else if (typeof kind === 'string' && kind !== '' && typeof apiVersion === 'string' && !isPolicyLikeKind(apiVersion, kind)) {
    const meta = 'metadata' in data && typeof data.metadata === 'object' && data.metadata !== null ? data.metadata : {};
    const name = 'name' in meta && typeof meta.name === 'string' ? meta.name : undefined;
    result.skipped.push({ file, document: index, path: formatPath(base), apiVersion, kind, ...(name !== undefined ? { name } : {}) });
    return result;
  } else {
    return problem([...base, 'kind'], 'UNKNOWN_KIND', `unsupported kind ${JSON.stringify(kind)} (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, NetworkPolicy, CiliumCIDRGroup)`);
  }
  if (!r.ok) {
    result.problems.push(...located(r.problems));
    return result;
  }
  const document = policyDocument(r.value);
  result.policies.push({ document, file, index });
  result.warnings.push(...located(documentWarnings(document)));
  return result;
}

/** Checks a list of already-parsed documents (e.g. a scenario's `policies`). */
export function loadPolicyDocuments(docs: readonly unknown[], file?: string, base: PathSegment[] = []): LoadResult {
  const result = emptyResult();
  docs.forEach((d, i) => merge(result, checkDocument(d, file, i, [...base, i])));
  return result;
}

export function loadPolicyText(text: string, file?: string): LoadResult {
  const result = emptyResult();
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
    for (const [d, base] of items) merge(result, checkDocument(d, file, i, base));
  }
  return result;
}

export function loadPolicyFile(file: string): LoadResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e: unknown) {
    const msg = e instanceof Error ? e.message : String(e);
    return { ...emptyResult(), problems: [{ file, path: '(file)', code: 'YAML_SYNTAX', message: `cannot read: ${msg}` }] };
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
  const result = emptyResult();
  for (const f of policyFilesIn(path)) merge(result, loadPolicyFile(f));
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
