import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { z } from 'zod';
import { repoPath } from '../util/paths.js';
import { isMeshdError } from '../util/errors.js';
import { identityCrds, IDENTITY_CRDS_FILE, IDENTITY_CRDS_HEADER } from '../identity/identity-crds.js';
import { CrdError, crdFileName, policyCrds, renderCrdYaml, renderCrdsYaml, structuralFromZod, type StructuralSchema } from './crds.js';

test('install/crds/ is what the generator makes from the schemas now (run node scripts/gen-crds.mjs after a schema change)', () => {
  const crds = policyCrds();
  assert.deepEqual(crds.map(crdFileName), ['ciliumnetworkpolicies.yaml', 'ciliumclusterwidenetworkpolicies.yaml', 'ciliumcidrgroups.yaml']);
  for (const crd of crds) assert.equal(readFileSync(repoPath('install', 'crds', crdFileName(crd)), 'utf8'), renderCrdYaml(crd), crdFileName(crd));
  assert.equal(readFileSync(repoPath('install', 'crds', IDENTITY_CRDS_FILE), 'utf8'), renderCrdsYaml(IDENTITY_CRDS_HEADER, identityCrds()), IDENTITY_CRDS_FILE);
});

/** Every node typed, or explicitly int-or-string / preserve-unknown-fields: what Kubernetes calls structural. */
function assertStructural(s: StructuralSchema, path: string): void {
  assert.ok(s.type !== undefined || s['x-kubernetes-int-or-string'] || s['x-kubernetes-preserve-unknown-fields'], `${path} has no type`);
  assert.ok(!(s.properties && s.additionalProperties), `${path} has both properties and additionalProperties`);
  for (const [k, v] of Object.entries(s.properties ?? {})) assertStructural(v, `${path}.${k}`);
  if (s.additionalProperties) assertStructural(s.additionalProperties, `${path}{}`);
  if (s.items) assertStructural(s.items, `${path}[]`);
  for (const k of Object.keys(s)) assert.ok(!['anyOf', 'oneOf', 'allOf', '$ref', 'propertyNames', 'const'].includes(k), `${path}: ${k}`);
}

test('the policy CRDs: both scopes, v2 served and stored, status subresource, short names, structural schema', () => {
  const [cnp, ccnp] = policyCrds();
  assert.ok(cnp && ccnp);
  assert.equal(cnp.spec.scope, 'Namespaced');
  assert.equal(ccnp.spec.scope, 'Cluster');
  assert.deepEqual(cnp.spec.names.shortNames, ['cnp']);
  assert.deepEqual(ccnp.spec.names.shortNames, ['ccnp']);
  for (const crd of [cnp, ccnp]) {
    const [v] = crd.spec.versions;
    assert.ok(v && v.served && v.storage && v.name === 'v2');
    assert.deepEqual(v.subresources, { status: {} });
    assert.ok(crd.spec.names.categories.includes('cilium'));
    assertStructural(v.schema.openAPIV3Schema, crd.spec.names.kind);
  }
  const spec = cnp.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec;
  const port = spec?.properties?.ingress?.items?.properties?.toPorts?.items?.properties?.ports?.items?.properties?.port;
  assert.deepEqual(port, { 'x-kubernetes-int-or-string': true }, 'a port is a number or a name');
  assert.deepEqual(spec?.properties?.egressDeny?.items?.properties?.toFQDNs, { 'x-kubernetes-preserve-unknown-fields': true }, 'kept for the agent to reject precisely');
});

test('zod → structural: strings, enums, bounds, maps, int-or-string', () => {
  const s = structuralFromZod(
    z.strictObject({
      name: z.string().min(1),
      mode: z.enum(['a', 'b']).optional(),
      count: z.number().int().min(0).max(10),
      any: z.number().int(),
      labels: z.record(z.string(), z.string()),
      port: z.union([z.string(), z.number().int()]),
      free: z.unknown().optional(),
      flags: z.array(z.boolean()).min(1),
    }),
  );
  assert.deepEqual(s, {
    type: 'object',
    required: ['name', 'count', 'any', 'labels', 'port', 'flags'],
    properties: {
      name: { type: 'string', minLength: 1 },
      mode: { type: 'string', enum: ['a', 'b'] },
      count: { type: 'integer', minimum: 0, maximum: 10 },
      any: { type: 'integer' },
      labels: { type: 'object', additionalProperties: { type: 'string' } },
      port: { 'x-kubernetes-int-or-string': true },
      free: { 'x-kubernetes-preserve-unknown-fields': true },
      flags: { type: 'array', minItems: 1, items: { type: 'boolean' } },
    },
  });
});

test('zod → structural: a construct without a structural form is refused with a code, naming the field', () => {
  const cases = [z.strictObject({ a: z.union([z.string(), z.boolean()]) }), z.strictObject({ a: z.literal('x') }), z.strictObject({ a: z.null() })];
  for (const schema of cases) {
    assert.throws(
      () => structuralFromZod(schema),
      (e) => isMeshdError(e, 'MESHD_K8S_CRD_SCHEMA_UNSUPPORTED') && e instanceof CrdError && e.field === 'a',
    );
  }
});
