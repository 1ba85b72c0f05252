/**
 * The Helm chart (install/helm/meshd) with the real `helm` (scripts/helm-cli.sh)
 * and a real kube-apiserver: lint, render with the default, Istio sidecar and
 * Istio ambient values, every rendered object through server-side dry-run,
 * the agent's permissions as the API server computes them, and the render
 * failing on Cilium values meshd does not support.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { configShape, loadConfig } from '../../src/agent/config.js';
import { repoPath } from '../../src/util/paths.js';
import { startKubeCluster } from '../../src/devcluster/kube-cluster.js';

const CHART = repoPath('install', 'helm', 'meshd');
const VALUES = {
  default: [] as string[],
  sidecar: ['-f', repoPath('examples', 'istio', 'values-sidecar.yaml')],
  ambient: ['-f', repoPath('examples', 'istio', 'values-ambient.yaml')],
};
const RELAY_UI = ['--set', 'hubble.relay.enabled=true', '--set-json', 'hubble.relay.peers=["node-1=10.0.0.1:4244"]', '--set', 'hubble.ui.enabled=true'];

const helmBin = (): string => execFileSync('bash', [repoPath('scripts', 'helm-cli.sh'), '--print-bin'], { encoding: 'utf8' }).trim();

/** helm with its own config, cache and data dirs (a chart on disk needs no repository); never throws for a non-zero exit. */
async function helm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const home = mkdtempSync(join(tmpdir(), 'meshd-helm-'));
  try {
    const env = { ...process.env, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
    return await new Promise((resolve) => {
      execFile(helmBin(), args, { env, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 }, (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ code, stdout, stderr });
      });
    });
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

const K8sObject = z.object({ apiVersion: z.string(), kind: z.string(), metadata: z.object({ name: z.string(), namespace: z.string().optional() }).passthrough() }).passthrough();
type K8sObject = z.infer<typeof K8sObject>;

function objects(yamlText: string): K8sObject[] {
  return parseAllDocuments(yamlText)
    .map((d) => d.toJS() as unknown)
    .filter((d) => d !== null && d !== undefined)
    .map((d) => K8sObject.parse(d));
}

async function render(extra: string[]): Promise<K8sObject[]> {
  const r = await helm(['template', 'meshd', CHART, '--namespace', 'kube-system', ...extra]);
  assert.equal(r.code, 0, `helm template ${extra.join(' ')}: ${r.stderr}`);
  return objects(r.stdout);
}

const one = (objs: K8sObject[], kind: string, name: string): K8sObject => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `rendered ${kind}/${name}`);
  return o;
};

const ConfigMapData = z.object({ data: z.object({ 'config.yaml': z.string() }) });
function agentConfig(objs: K8sObject[]) {
  const text = ConfigMapData.parse(one(objs, 'ConfigMap', 'meshd-config')).data['config.yaml'];
  const dir = mkdtempSync(join(tmpdir(), 'meshd-chart-config-'));
  try {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, text);
    // The agent's own loader: an unknown key or a bad value throws with its code.
    return { raw: z.record(z.string(), z.unknown()).parse(parseYaml(text)), config: loadConfig({ file, env: {} }) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('helm lint passes with the default values and with the Istio sidecar and ambient values', async () => {
  for (const [name, extra] of Object.entries(VALUES)) {
    const r = await helm(['lint', CHART, '--strict', ...extra]);
    assert.equal(r.code, 0, `helm lint (${name}): ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  }
});

test('the ConfigMap carries exactly the agent\'s configuration keys, and the agent\'s loader accepts it for every values file', async () => {
  const listed = z.object({ keys: z.array(z.string()) }).parse(parseYaml(readFileSync(join(CHART, 'files', 'agent-config-keys.yaml'), 'utf8'))).keys;
  assert.deepEqual([...listed].sort(), Object.keys(configShape).filter((k) => k !== 'nodeName').sort(), 'files/agent-config-keys.yaml is current (node scripts/helm-chart.mjs)');
  // Every agent key is declared in values.yaml (null for "unset").
  const values = z.record(z.string(), z.unknown()).parse(parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8')));
  for (const key of listed) {
    let v: unknown = values;
    for (const part of key.split('.')) {
      const m = z.record(z.string(), z.unknown()).safeParse(v);
      assert.ok(m.success && part in m.data, `values.yaml declares ${key}`);
      v = m.data[part];
    }
  }
  // The key list and docs/install.md's values reference are what scripts/helm-chart.mjs derives now.
  const gen = await new Promise<number>((resolve) => execFile(process.execPath, [repoPath('scripts', 'helm-chart.mjs'), '--check'], (err) => resolve(err === null ? 0 : 1)));
  assert.equal(gen, 0, 'node scripts/helm-chart.mjs --check: the derived files are current');
  const def = agentConfig(await render(VALUES.default));
  assert.equal(def.config['socketLB.hostNamespaceOnly'], false);
  assert.equal(def.config['cni.exclusive'], true);
  assert.equal(def.config['identityGC.leaseNamespace'], 'kube-system');
  assert.equal(def.config['hubble.listenAddress'], ':4244');
  assert.equal('k8sServiceHost' in def.raw, false, 'unset (null) keys are not rendered');
  for (const mode of ['sidecar', 'ambient'] as const) {
    const c = agentConfig(await render(VALUES[mode])).config;
    assert.equal(c['socketLB.hostNamespaceOnly'], true, `${mode}: socketLB.hostNamespaceOnly`);
    assert.equal(c['cni.exclusive'], false, `${mode}: cni.exclusive`);
    assert.equal(c.kubeProxyReplacement, true, `${mode}: kubeProxyReplacement`);
  }
  const set = agentConfig(await render(['--set', 'k8sServiceHost=10.0.0.1', '--set', 'k8sServicePort=6443', '--set', 'loadBalancer.algorithm=maglev']));
  assert.equal(set.config.k8sServiceHost, '10.0.0.1');
  assert.equal(set.config.k8sServicePort, 6443);
  assert.equal(set.config['loadBalancer.algorithm'], 'maglev');
});

test('the chart\'s CRDs are install/crds and its RBAC is install/rbac.yaml', async () => {
  const crdDir = repoPath('install', 'crds');
  const files = readdirSync(crdDir).filter((f) => f.endsWith('.yaml')).sort();
  assert.deepEqual(readdirSync(join(CHART, 'crds')).filter((f) => f.endsWith('.yaml')).sort(), files);
  for (const f of files) assert.equal(readFileSync(join(CHART, 'crds', f), 'utf8'), readFileSync(join(crdDir, f), 'utf8'), `crds/${f}`);
  const shown = await helm(['show', 'crds', CHART]);
  assert.equal(shown.code, 0, shown.stderr);
  const want = files.flatMap((f) => objects(readFileSync(join(crdDir, f), 'utf8')).map((o) => o.metadata.name)).sort();
  assert.deepEqual(objects(shown.stdout).map((o) => o.metadata.name).sort(), want);

  const fileObjs = objects(readFileSync(repoPath('install', 'rbac.yaml'), 'utf8'));
  // Objects annotated meshd.io/enabled-by render only with that value on: all of them are on here.
  const rendered = await render(['--set', 'gatewayAPI.enabled=true']);
  for (const o of fileObjs) {
    const r = one(rendered, o.kind, o.metadata.name);
    for (const field of ['rules', 'roleRef'] as const) assert.deepEqual(r[field], o[field], `${o.kind}/${o.metadata.name} ${field}`);
  }
  // skipCRDCreation=true drops exactly the CRD-registration rules.
  const skip = await render(['--set', 'skipCRDCreation=true', '--set', 'gatewayAPI.enabled=true']);
  const Rules = z.array(z.object({ apiGroups: z.array(z.string()) }).passthrough()).default([]);
  for (const o of fileObjs.filter((x) => x.kind === 'ClusterRole')) {
    const want = Rules.parse(o.rules).filter((r) => !r.apiGroups.includes('apiextensions.k8s.io'));
    assert.deepEqual(Rules.parse(one(skip, 'ClusterRole', o.metadata.name).rules), want);
  }
});

test('nodeCleanup=true renders one pod per node running meshd uninstall --node with the paths of the values', async () => {
  const objs = await render(['--set', 'nodeCleanup=true', '--set', 'stateDir=/run/meshd-x', '--set', 'cni.binDir=/usr/libexec/cni']);
  const Ds = z.object({
    spec: z.object({ template: z.object({ spec: z.object({ hostPID: z.literal(true), initContainers: z.array(z.object({ command: z.array(z.string()), args: z.array(z.string()) })).length(1) }) }) }),
  });
  const init = Ds.parse(one(objs, 'DaemonSet', 'meshd-node-cleanup')).spec.template.spec.initContainers[0];
  assert.ok(init);
  assert.deepEqual([...init.command, ...init.args], ['meshd', 'uninstall', '--node', '--set=stateDir=/run/meshd-x', '--set=bpf.root=/sys/fs/bpf', '--set=cni.confDir=/etc/cni/net.d', '--set=cni.binDir=/usr/libexec/cni']);
});

test('Cilium values meshd does not support fail the render with their names', async () => {
  const cases: Array<[string[], string]> = [
    [['--set', 'encryption.enabled=true'], 'encryption'],
    [['--set', 'clustermesh.useAPIServer=true'], 'clustermesh'],
    [['--set', 'cni.chainingMode=generic-veth'], 'cni.chainingMode'],
    [['--set', 'socketLB.terminatePodConnections=true'], 'socketLB.terminatePodConnections'],
    [['--set', 'hubble.tls.enabled=false'], 'hubble.tls'],
    [['--set', 'bpf.masquerade=true'], 'bpf.masquerade'],
    [['--set', 'routingMode=overlay'], 'routingMode'],
    [['--set', 'tunnelProtocol=ipip'], 'tunnelProtocol'],
    [['--set', 'operator.replicas=2'], 'operator'],
    [['--set', 'notACiliumKey=1'], 'notACiliumKey'],
    [['--set', 'dnsProxy.notAKey=1'], 'dnsProxy.notAKey'],
    [['--set', 'policyEnforcementMode=sometimes'], 'policyEnforcementMode'],
    [['--set', 'identityGC.extra=1'], 'extra'],
  ];
  for (const [args, name] of cases) {
    const r = await helm(['template', 'meshd', CHART, ...args]);
    assert.notEqual(r.code, 0, `${args.join(' ')} renders`);
    assert.ok(r.stderr.includes(name), `${args.join(' ')}: the error names ${name}: ${r.stderr}`);
  }
  // Values Cilium and meshd share, with the one value meshd has, render.
  await render(['--set', 'bpf.masquerade=false', '--set', 'routingMode=native', '--set', 'resources.limits.memory=1Gi', '--set', 'podAnnotations.a=b']);
});

test('every rendered object passes server-side dry-run on a real API server; the agent can do what install/rbac.yaml grants and nothing else', async (t) => {
  const kube = await startKubeCluster({ t });
  // The CRDs for real first: the dry-run of objects that use them needs them.
  const crds = await helm(['show', 'crds', CHART]);
  assert.equal(crds.code, 0, crds.stderr);
  const applied = await kube.kubectl(['apply', '--server-side', '-f', '-'], { input: crds.stdout });
  assert.equal(applied.code, 0, applied.stderr);
  for (const o of objects(crds.stdout)) {
    const w = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', `crd/${o.metadata.name}`]);
    assert.equal(w.code, 0, w.stderr);
  }
  // The namespaces the chart creates for real too: a dry-run creates nothing the objects in them could name.
  const namespaces = (await render(VALUES.default)).filter((o) => o.kind === 'Namespace');
  assert.ok(namespaces.length > 0, 'the chart creates the TLS Secrets namespace');
  const ns = await kube.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: namespaces }) });
  assert.equal(ns.code, 0, ns.stderr);
  for (const [name, extra] of Object.entries({ ...VALUES, 'relay+ui': RELAY_UI, 'node-cleanup': ['--set', 'nodeCleanup=true'], 'gateway-api': ['--set', 'gatewayAPI.enabled=true'] })) {
    const r = await helm(['template', 'meshd', CHART, '--namespace', 'kube-system', ...extra]);
    assert.equal(r.code, 0, r.stderr);
    const objs = objects(r.stdout);
    const kinds = new Set(objs.map((o) => o.kind));
    for (const k of ['DaemonSet', 'ConfigMap', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding']) assert.ok(kinds.has(k), `${name}: renders a ${k}`);
    if (name === 'relay+ui') for (const k of ['Deployment', 'Service', 'PodDisruptionBudget']) assert.ok(kinds.has(k), `${name}: renders a ${k}`);
    assert.equal(objs.some((o) => o.metadata.name === 'meshd-node-cleanup'), name === 'node-cleanup', `${name}: the node-cleanup DaemonSet only with nodeCleanup=true`);
    assert.equal(objs.some((o) => o.metadata.name === 'meshd-agent-gateway-api'), name === 'gateway-api', `${name}: the Gateway API RBAC only with gatewayAPI.enabled=true`);
    const dry = await kube.kubectl(['apply', '--server-side', '--dry-run=server', '--field-manager=helm', '-f', '-'], { input: r.stdout });
    assert.equal(dry.code, 0, `${name}: ${dry.stderr}`);
    assert.equal(dry.stdout.trim().split('\n').length, objs.length, `${name}: every object answered: ${dry.stdout}`);
  }

  // The RBAC for real, then ask the API server what the agent's ServiceAccount may do.
  const rbac = (await render(VALUES.default)).filter((o) => ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(o.kind));
  const a = await kube.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }) });
  assert.equal(a.code, 0, a.stderr);
  const as = '--as=system:serviceaccount:kube-system:meshd';
  const list = await kube.kubectl(['auth', 'can-i', '--list', as, '-n', 'kube-system']);
  assert.equal(list.code, 0, list.stderr);
  // MESHD_WRITE_CAN_I=FILE keeps the table for docs/install.md.
  if (process.env.MESHD_WRITE_CAN_I) writeFileSync(process.env.MESHD_WRITE_CAN_I, list.stdout);
  // The table's columns, by the header's offsets: Resources, Non-Resource URLs, Resource Names, Verbs.
  const lines = list.stdout.split('\n').filter((l) => l.trim() !== '');
  const header = lines[0] ?? '';
  const [cUrls, cNames, cVerbs] = ['Non-Resource URLs', 'Resource Names', 'Verbs'].map((h) => header.indexOf(h));
  assert.ok(cUrls !== undefined && cNames !== undefined && cVerbs !== undefined && cUrls > 0 && cNames > cUrls && cVerbs > cNames, header);
  const granted = new Map<string, Set<string>>();
  for (const l of lines.slice(1)) {
    const resource = l.slice(0, cUrls).trim();
    if (resource === '') continue; // non-resource URLs (discovery, health): every authenticated identity has them
    const names = l.slice(cNames, cVerbs).trim();
    const key = names === '[]' ? resource : `${resource} ${names}`;
    const s = granted.get(key) ?? new Set<string>();
    for (const v of l.slice(cVerbs).trim().replace(/^\[|\]$/g, '').split(' ').filter(Boolean)) s.add(v);
    granted.set(key, s);
  }
  // What install/rbac.yaml grants, resource by resource.
  const Rule = z.object({ apiGroups: z.array(z.string()), resources: z.array(z.string()), verbs: z.array(z.string()), resourceNames: z.array(z.string()).optional() });
  const expected = new Map<string, Set<string>>();
  const Meta = z.object({ metadata: z.object({ namespace: z.string().optional(), annotations: z.record(z.string(), z.string()).optional() }) });
  for (const o of objects(readFileSync(repoPath('install', 'rbac.yaml'), 'utf8'))) {
    if (o.kind !== 'ClusterRole' && o.kind !== 'Role') continue;
    // Rendered only when the value its annotation names is true; every such value is off by default.
    if (Meta.parse(o).metadata.annotations?.['meshd.io/enabled-by']) continue;
    // The listing is for kube-system: a Role elsewhere (the TLS Secrets' namespace) is checked below.
    if (o.kind === 'Role' && Meta.parse(o).metadata.namespace !== 'kube-system') continue;
    for (const r of z.array(Rule).parse(o.rules)) {
      for (const g of r.apiGroups) {
        for (const res of r.resources) {
          const [base, sub] = res.split('/');
          const resource = `${g === '' ? base : `${base}.${g}`}${sub ? `/${sub}` : ''}`;
          for (const key of r.resourceNames ? r.resourceNames.map((n) => `${resource} [${n}]`) : [resource]) {
            const s = expected.get(key) ?? new Set<string>();
            r.verbs.forEach((v) => s.add(v));
            expected.set(key, s);
          }
        }
      }
    }
  }
  // Every authenticated identity gets these from the API server's own roles (system:basic-user, discovery).
  const builtin = (key: string) => /^(selfsubject(access|rules)reviews\.authorization\.k8s\.io|selfsubjectreviews\.authentication\.k8s\.io|clustertrustbundles\.certificates\.k8s\.io)$/.test(key);
  for (const [key, verbs] of expected) assert.deepEqual([...(granted.get(key) ?? [])].sort(), [...verbs].sort(), `the agent may ${[...verbs].join(',')} ${key}`);
  const extra = [...granted.keys()].filter((k) => !expected.has(k) && !builtin(k));
  assert.deepEqual(extra, [], `granted beyond install/rbac.yaml: ${extra.join('; ')}\n${list.stdout}`);
  for (const [verb, what] of [['get', 'secrets'], ['list', 'secrets'], ['create', 'secrets'], ['delete', 'secrets'], ['delete', 'pods'], ['create', 'pods'], ['update', 'nodes'], ['delete', 'customresourcedefinitions.apiextensions.k8s.io']]) {
    const r = await kube.kubectl(['auth', 'can-i', verb ?? '', what ?? '', as, '-A']);
    assert.equal(r.stdout.trim(), 'no', `the agent may not ${verb} ${what}`);
  }
  // Secrets: read in the TLS Secrets' namespace only.
  for (const verb of ['get', 'list', 'watch']) {
    const r = await kube.kubectl(['auth', 'can-i', verb, 'secrets', as, '-n', 'cilium-secrets']);
    assert.equal(r.stdout.trim(), 'yes', `the agent may ${verb} secrets in cilium-secrets`);
  }
  for (const ns of ['kube-system', 'default']) {
    const r = await kube.kubectl(['auth', 'can-i', 'get', 'secrets', as, '-n', ns]);
    assert.equal(r.stdout.trim(), 'no', `the agent may not get secrets in ${ns}`);
  }
});
