/**
 * The generated cilium.io CRDs against a real kube-apiserver: the agent's
 * ServiceAccount, bound to install/rbac.yaml, registers them (create, update
 * an older one, leave a current one alone); every policy meshd accepts from
 * examples/ and src/policy/testdata/ applies with kubectl and reads back
 * unchanged (nothing pruned); a wrongly typed field is refused by the API
 * server, naming the field; an API server that is down at start delays
 * registration, not the agent.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { z } from 'zod';
import { resolveKubeConfig } from '../../src/k8s/client.js';
import { CRD_SCHEMA_VERSION_LABEL, CrdRegistrar, policyCrds, registerCrds } from '../../src/k8s/crds.js';
import { nodeCrds } from '../../src/k8s/meshd-node.js';
import { loadPolicyDocuments, loadPolicyFile } from '../../src/policy/api/loader.js';
import { isMeshdError } from '../../src/util/errors.js';
import { repoPath } from '../../src/util/paths.js';
import { startKubeCluster } from '../../src/devcluster/kube-cluster.js';

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? yamlFiles(join(dir, d.name)) : /\.ya?ml$/.test(d.name) ? [join(dir, d.name)] : []));
}

test('the policy CRDs on a real API server', async (t) => {
  const kube = await startKubeCluster({ t });
  await kube.apply(readFileSync(repoPath('install', 'rbac.yaml'), 'utf8'));
  const sa = await kube.serviceAccountKubeconfig('kube-system', 'meshd');
  const kubeConfig = resolveKubeConfig({ kubeconfigPath: sa.kubeconfigPath, env: {} }).kubeConfig;

  await t.test('the agent, held to the shipped ClusterRole, creates a missing CRD and updates an older one', async () => {
    const [cnp, ccnp] = policyCrds();
    assert.ok(cnp && ccnp);
    // An older CCNP CRD: no schema, an older version label.
    const old = structuredClone(ccnp);
    old.metadata.labels[CRD_SCHEMA_VERSION_LABEL] = '0';
    const [v] = old.spec.versions;
    assert.ok(v);
    v.schema.openAPIV3Schema = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
    await kube.apply(old);

    assert.deepEqual(await registerCrds({ kubeConfig }), { 'ciliumnetworkpolicies.cilium.io': 'created', 'ciliumclusterwidenetworkpolicies.cilium.io': 'updated', 'ciliumcidrgroups.cilium.io': 'created' });
    const got = await kube.kubectl(['get', 'crd', 'ciliumclusterwidenetworkpolicies.cilium.io', '-o', 'json']);
    assert.equal(got.code, 0, got.stderr);
    const crd: unknown = JSON.parse(got.stdout);
    assert.ok(typeof crd === 'object' && crd !== null && 'spec' in crd);
    assert.deepEqual(JSON.parse(JSON.stringify(crd.spec)).versions[0].schema, ccnp.spec.versions[0]?.schema, 'the schema is the current one');
    for (const name of ['ciliumnetworkpolicies.cilium.io', 'ciliumclusterwidenetworkpolicies.cilium.io']) {
      const w = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=5s', `crd/${name}`]);
      assert.equal(w.code, 0, `${name} is served when registerCrds returns: ${w.stderr}`);
    }

    assert.deepEqual(await registerCrds({ kubeConfig }), { 'ciliumnetworkpolicies.cilium.io': 'unchanged', 'ciliumclusterwidenetworkpolicies.cilium.io': 'unchanged', 'ciliumcidrgroups.cilium.io': 'unchanged' });
    // A newer CRD (a newer agent put it there) is not downgraded.
    const newer = structuredClone(cnp);
    newer.metadata.labels[CRD_SCHEMA_VERSION_LABEL] = '999';
    await kube.apply(newer);
    assert.equal((await registerCrds({ kubeConfig }))['ciliumnetworkpolicies.cilium.io'], 'newer');
  });

  await t.test('agents registering the same missing CRDs at the same moment all succeed', async () => {
    // Agents of a fresh cluster start together: a create that loses the race (409) is not a failure.
    const results = await Promise.all([0, 1, 2, 3].map(() => registerCrds({ kubeConfig, crds: nodeCrds() })));
    for (const r of results) assert.deepEqual(Object.keys(r).sort(), nodeCrds().map((c) => c.metadata.name).sort());
    const created = results.flatMap((r) => Object.values(r)).filter((a) => a === 'created').length;
    assert.ok(created >= 1 && created <= nodeCrds().length, `each CRD is created once at most (${created})`);
  });

  await t.test('without the RBAC rules registration is refused with a code', async () => {
    const other = await kube.serviceAccountKubeconfig('default', 'nobody');
    await assert.rejects(
      registerCrds({ kubeConfig: resolveKubeConfig({ kubeconfigPath: other.kubeconfigPath, env: {} }).kubeConfig }),
      (e) => isMeshdError(e, 'MESHD_K8S_CRD_REGISTER_FAILED'),
    );
  });

  await t.test('every policy meshd accepts from examples/ and src/policy/testdata/ applies and reads back unchanged', async () => {
    // Test cases under testdata/ hold their policies in a `policies` list beside endpoints and expectations.
    const testCase = z.looseObject({ policies: z.array(z.unknown()) });
    const loaded = [
      ...yamlFiles(repoPath('examples')).map((f) => ({ file: f, r: loadPolicyFile(f) })),
      ...yamlFiles(repoPath('src', 'policy', 'testdata')).map((f) => ({ file: f, r: loadPolicyDocuments(testCase.parse(parse(readFileSync(f, 'utf8'))).policies, f) })),
    ];
    const policies = loaded.flatMap(({ file, r }) => r.policies.flatMap((p) => (p.document.kind === 'NetworkPolicy' ? [] : [{ file, doc: p.document }])));
    assert.ok(policies.length >= 20, `found ${policies.length} Cilium policies`);
    const namespaces = new Set(policies.flatMap((p) => (p.doc.kind === 'CiliumNetworkPolicy' ? [p.doc.doc.metadata.namespace ?? 'default'] : [])));
    await kube.apply([...namespaces].map((name) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } })));
    for (const { file, doc } of policies) {
      const d = doc.doc;
      const ns = doc.kind === 'CiliumNetworkPolicy' ? ['-n', d.metadata.namespace ?? 'default'] : [];
      // kubectl validates strictly by default: a field the CRD does not know would be an error here, not pruned silently.
      const r = await kube.kubectl(['apply', ...ns, '-f', '-'], { input: JSON.stringify({ ...d, metadata: { name: d.metadata.name, ...(d.metadata.namespace ? { namespace: d.metadata.namespace } : {}) } }) });
      assert.equal(r.code, 0, `${file} ${d.metadata.name}: ${r.stderr}`);
      const back = await kube.kubectl(['get', doc.kind === 'CiliumNetworkPolicy' ? 'cnp' : 'ccnp', ...ns, d.metadata.name, '-o', 'json']);
      assert.equal(back.code, 0, back.stderr);
      const obj: unknown = JSON.parse(back.stdout);
      assert.ok(typeof obj === 'object' && obj !== null);
      assert.deepEqual('spec' in obj ? obj.spec : undefined, d.spec, `${file} ${d.metadata.name}: spec kept as written`);
      assert.deepEqual('specs' in obj ? obj.specs : undefined, d.specs, `${file} ${d.metadata.name}: specs kept as written`);
    }
  });

  await t.test('a wrongly typed or unknown field is refused, naming the field', async () => {
    const bad = {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: 'bad-type', namespace: 'default' },
      spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ toPorts: [{ ports: [{ port: '80', endPort: 'ninety' }] }] }] },
    };
    const r = await kube.kubectl(['apply', '-f', '-'], { input: JSON.stringify(bad) });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.endPort/);
    const enumBad = { ...bad, metadata: { name: 'bad-enum', namespace: 'default' }, spec: { endpointSelector: {}, ingress: [{ fromEntities: ['everywhere'] }] } };
    const r2 = await kube.kubectl(['apply', '-f', '-'], { input: JSON.stringify(enumBad) });
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /spec\.ingress\[0\]\.fromEntities\[0\]/);
    // An unknown field is an error too (kubectl's strict field validation against the schema), not pruned silently.
    const unknown = { ...bad, metadata: { name: 'bad-field', namespace: 'default' }, spec: { endpointSelector: {}, ingress: [{ fromEndpoint: [{}] }] } };
    const r3 = await kube.kubectl(['apply', '-f', '-'], { input: JSON.stringify(unknown) });
    assert.notEqual(r3.code, 0);
    assert.match(r3.stderr, /spec\.ingress\[0\]\.fromEndpoint/);
    for (const name of ['bad-type', 'bad-enum', 'bad-field']) assert.notEqual((await kube.kubectl(['get', 'cnp', name])).code, 0, `${name} was not stored`);
  });

  await t.test('API server down at start: the registrar lets the agent go on and registers once it is back', async () => {
    assert.equal((await kube.kubectl(['delete', 'crd', 'ciliumnetworkpolicies.cilium.io', 'ciliumclusterwidenetworkpolicies.cilium.io'])).code, 0);
    await kube.stopApiServer();
    const registrar = new CrdRegistrar({ kubeConfig, firstAttemptMs: 1_000, backoff: { initialMs: 200, maxMs: 1_000 } });
    t.after(() => registrar.stop());
    const started = performance.now();
    await registrar.start();
    assert.ok(performance.now() - started < 3_000, 'start() did not wait for the API server');
    assert.equal(registrar.registered(), false);
    await kube.startApiServer();
    const deadline = Date.now() + 30_000;
    while (!registrar.registered() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(registrar.registered(), 'registered after the API server came back');
    const w = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=10s', 'crd/ciliumnetworkpolicies.cilium.io', 'crd/ciliumclusterwidenetworkpolicies.cilium.io']);
    assert.equal(w.code, 0, w.stderr);
  });
});
