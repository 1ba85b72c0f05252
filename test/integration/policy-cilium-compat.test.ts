/**
 * meshd's policy language measured against Cilium's own artefacts, read from
 * the github.com/cilium/cilium Go module in the Go module cache (fetched by
 * scripts/cilium-module.sh, which setup runs). The test fails, never skips,
 * when the module is missing.
 *
 * 1. `meshd policy validate` over every manifest under the module's
 *    examples/policies/: each policy is accepted, or refused only with
 *    UNSUPPORTED_FIELD for a feature meshd does not have; the other objects
 *    of those manifests (Namespaces, Deployments, …) are listed as skipped.
 * 2. Every field path of Cilium's CiliumNetworkPolicy,
 *    CiliumClusterwideNetworkPolicy and CiliumCIDRGroup CRD schemas is either
 *    in meshd's schema (read and enforced) or under a field meshd refuses by
 *    name — and a document setting that field is refused with
 *    UNSUPPORTED_FIELD at its path.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { z } from 'zod';
import { policyCrds, type StructuralSchema } from '../../src/k8s/crds.js';
import { loadPolicyDocuments } from '../../src/policy/api/loader.js';
import { repoPath } from '../../src/util/paths.js';

function ciliumModule(): string {
  const version = spawnSync('bash', [repoPath('scripts', 'cilium-module.sh'), '--version'], { encoding: 'utf8' }).stdout.trim();
  const cache = spawnSync('go', ['env', 'GOMODCACHE'], { encoding: 'utf8' }).stdout.trim();
  const dir = join(cache, 'github.com', 'cilium', `cilium@${version}`);
  if (!version || !cache || !existsSync(join(dir, 'go.mod'))) {
    throw new Error(`the cilium module ${version} is not in the Go module cache (${dir}); run scripts/cilium-module.sh (npm run setup does)`);
  }
  return dir;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((d) => (d.isDirectory() ? yamlFiles(join(dir, d.name)) : /\.ya?ml$/.test(d.name) ? [join(dir, d.name)] : []))
    .sort();
}

/** The refusals meshd makes on Cilium's examples: file → field paths, each a feature meshd does not have. */
const EXPECTED_REFUSALS: Record<string, string[]> = {
  'auth/auth.yaml': ['spec.egress[0].auth'],
};

const validateOutput = z.object({
  valid: z.number(),
  cidrGroups: z.number(),
  problems: z.array(z.object({ file: z.string().optional(), path: z.string(), code: z.string() })),
  warnings: z.array(z.object({ file: z.string().optional(), path: z.string(), code: z.string() })),
  skipped: z.array(z.object({ file: z.string().optional(), kind: z.string() })),
});

test("meshd policy validate over Cilium's examples/policies: accepted, or refused only as UNSUPPORTED_FIELD", () => {
  const dir = join(ciliumModule(), 'examples', 'policies');
  const files = yamlFiles(dir);
  assert.ok(files.length >= 50, `only ${files.length} example manifests`);
  const r = spawnSync(process.execPath, [repoPath('bin', 'meshd.mjs'), 'policy', 'validate', '-o', 'json', ...files], { encoding: 'utf8' });
  const out = validateOutput.parse(JSON.parse(r.stdout.trim().split('\n').pop() ?? ''));
  const refused: Record<string, string[]> = {};
  for (const p of out.problems) {
    assert.equal(p.code, 'UNSUPPORTED_FIELD', `${p.file ?? ''}: ${p.path}: ${p.code}`);
    const f = relative(dir, p.file ?? '');
    (refused[f] ??= []).push(p.path);
  }
  assert.deepEqual(refused, EXPECTED_REFUSALS);
  assert.equal(r.status, 1, 'refusals make validate exit 1');
  // Every other policy is valid: one per CNP/CCNP document not refused.
  let policyDocs = 0;
  for (const f of files) {
    for (const d of readFileSync(f, 'utf8').split(/^---$/m)) {
      const doc = z.object({ kind: z.unknown() }).safeParse(parse(d));
      const kind = doc.success ? doc.data.kind : undefined;
      if (kind === 'CiliumNetworkPolicy' || kind === 'CiliumClusterwideNetworkPolicy' || kind === 'NetworkPolicy') policyDocs++;
    }
  }
  assert.equal(out.valid, policyDocs - Object.values(EXPECTED_REFUSALS).flat().length);
  // The non-policy objects of the demo manifests are listed, not judged.
  assert.deepEqual([...new Set(out.skipped.map((s) => s.kind))].sort(), ['Deployment', 'Namespace', 'Pod', 'Service', 'ServiceAccount']);
  // fromRequires is enforced with a deprecation warning.
  assert.deepEqual(
    out.warnings.map((w) => [relative(dir, w.file ?? ''), w.path, w.code]),
    [['l3/requires/requires.yaml', 'specs[0].ingress[0].fromRequires', 'DEPRECATED_FIELD']],
  );
});

type OpenApi = { properties?: Record<string, OpenApi>; items?: OpenApi; additionalProperties?: OpenApi | boolean; description?: string; 'x-kubernetes-preserve-unknown-fields'?: boolean };
const openApi: z.ZodType<OpenApi> = z.lazy(() =>
  z.looseObject({
    properties: z.record(z.string(), openApi).optional(),
    items: openApi.optional(),
    additionalProperties: z.union([z.boolean(), openApi]).optional(),
    description: z.string().optional(),
    'x-kubernetes-preserve-unknown-fields': z.boolean().optional(),
  }),
);

/** Field paths of a schema: `spec.ingress[].toPorts[].ports[].port`. Map values are `{}`. */
function fieldPaths(s: OpenApi, path: string, out: Map<string, OpenApi>): Map<string, OpenApi> {
  for (const [k, c] of Object.entries(s.properties ?? {})) {
    const p = path ? `${path}.${k}` : k;
    out.set(p, c);
    fieldPaths(c, p, out);
  }
  if (s.items) fieldPaths(s.items, `${path}[]`, out);
  if (typeof s.additionalProperties === 'object') fieldPaths(s.additionalProperties, `${path}{}`, out);
  return out;
}

const REFUSED = /^Not supported by meshd: /;

/** A document of `kind` that sets the field at `path` (a refused field: any value will do). */
function documentSetting(kind: string, path: string): unknown {
  const segs = path.split('.');
  const leaf = (i: number): unknown => {
    const seg = segs[i];
    if (seg === undefined) return { x: 1 };
    const arr = seg.endsWith('[]');
    const name = arr ? seg.slice(0, -2) : seg;
    const inner = leaf(i + 1);
    const obj: Record<string, unknown> = { [name]: arr ? [inner] : inner };
    // The rule object (spec, specs[]) needs a subject to be valid apart from the field.
    if (i === 0) {
      const rule = obj[name];
      const withSelector = (r: unknown): unknown => (typeof r === 'object' && r !== null ? { endpointSelector: {}, ...r } : r);
      obj[name] = Array.isArray(rule) ? rule.map(withSelector) : withSelector(rule);
    }
    return obj;
  };
  const body = leaf(0);
  return { apiVersion: 'cilium.io/v2', kind, metadata: { name: 'probe', ...(kind === 'CiliumNetworkPolicy' ? { namespace: 'default' } : {}) }, ...(typeof body === 'object' ? body : {}) };
}

test("every field of Cilium's policy CRD schemas is handled by meshd's schema or refused by name", () => {
  const crdDir = join(ciliumModule(), 'pkg', 'k8s', 'apis', 'cilium.io', 'client', 'crds', 'v2');
  const mine = new Map(policyCrds().map((c) => [c.spec.names.kind, c]));
  const cases: Array<[string, string]> = [
    ['CiliumNetworkPolicy', 'ciliumnetworkpolicies.yaml'],
    ['CiliumClusterwideNetworkPolicy', 'ciliumclusterwidenetworkpolicies.yaml'],
    ['CiliumCIDRGroup', 'ciliumcidrgroups.yaml'],
  ];
  const unhandled: string[] = [];
  const refusedChecked = new Set<string>();
  let handled = 0;
  for (const [kind, file] of cases) {
    const crd = z
      .object({ spec: z.object({ versions: z.array(z.object({ name: z.string(), schema: z.object({ openAPIV3Schema: openApi }) })) }) })
      .parse(parse(readFileSync(join(crdDir, file), 'utf8')));
    const theirs = crd.spec.versions.find((v) => v.name === 'v2')?.schema.openAPIV3Schema;
    assert.ok(theirs, `${file}: no v2 schema`);
    const ourCrd = mine.get(kind);
    assert.ok(ourCrd, `meshd has no CRD for ${kind}`);
    const ourSchema: StructuralSchema | undefined = ourCrd.spec.versions.find((v) => v.name === 'v2')?.schema.openAPIV3Schema;
    assert.ok(ourSchema);
    const ours = fieldPaths(openApi.parse(ourSchema), '', new Map());
    for (const [path] of fieldPaths(theirs, '', new Map())) {
      if (!path.startsWith('spec')) continue; // spec and specs[]; metadata and status are not policy
      const segs = path.split('.');
      // The longest prefix meshd knows decides: the field itself (handled), or a refused ancestor.
      let refusedAt: string | undefined;
      for (let i = 1; i <= segs.length; i++) {
        // A refused list is one untyped node: `toGroups`, not `toGroups[]`.
        const prefix = segs.slice(0, i).join('.').replace(/\[\]$/, '');
        const node = ours.get(prefix);
        if (node && REFUSED.test(node.description ?? '')) {
          refusedAt = prefix;
          break;
        }
      }
      if (refusedAt !== undefined) {
        if (refusedChecked.has(`${kind} ${refusedAt}`)) continue;
        refusedChecked.add(`${kind} ${refusedAt}`);
        const r = loadPolicyDocuments([documentSetting(kind, refusedAt)]);
        const want = `[0].${refusedAt.replaceAll('[]', '[0]')}`;
        // Refused at exactly that path (a probe may also lack a required sibling, e.g. headerMatches[].name).
        assert.ok(r.problems.some((p) => p.path === want && p.code === 'UNSUPPORTED_FIELD'), `${kind} ${refusedAt}: ${JSON.stringify(r.problems)}`);
        assert.ok(r.problems.every((p) => p.code !== 'UNKNOWN_FIELD') && r.policies.length === 0, `${kind} ${refusedAt}: ${JSON.stringify(r.problems)}`);
        continue;
      }
      if (ours.has(path)) handled++;
      else unhandled.push(`${kind} ${path}`);
    }
  }
  assert.deepEqual(unhandled, [], 'Cilium fields meshd neither handles nor refuses by name');
  assert.ok(handled > 200, `only ${handled} handled paths`);
  // The refusals the issue names are among them (CNP and CCNP alike).
  for (const f of ['spec.ingress[].authentication', 'spec.egress[].toGroups', 'spec.ingress[].fromGroups', 'spec.egress[].toPorts[].listener']) {
    assert.ok(refusedChecked.has(`CiliumNetworkPolicy ${f}`), f);
    assert.ok(refusedChecked.has(`CiliumClusterwideNetworkPolicy ${f}`), f);
  }
});
