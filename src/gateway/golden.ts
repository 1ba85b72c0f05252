/**
 * Golden cases of the Gateway API translation: test/fixtures/gateway/<case>/
 * holds `input.yaml` (Kubernetes objects, as applied) and `output.yaml`
 * (the Envoy resources and the status meshd computes from them). The golden
 * test compares; `node dist/src/gateway/golden.js --update [case…]`
 * rewrites the outputs after a deliberate change (review the diff).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { formatPath } from '../k8s/problem.js';
import { parseResource, type Resource } from '../k8s/kinds.js';
import { secretData } from '../k8s/secret.js';
import { repoPath } from '../util/paths.js';
import { ingest, type GatewayInput } from './ingestion.js';
import { CONTROLLER_NAME, type GatewayModel } from './model.js';
import { translate } from './translate.js';

export const GOLDEN_DIR = repoPath('test', 'fixtures', 'gateway');
/** The node address of the golden cases (TEST-NET-1). */
export const GOLDEN_NODE_ADDRESS = '192.0.2.10';

export function goldenCases(): string[] {
  return readdirSync(GOLDEN_DIR, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
}

/** Objects → the ingestion input (each object parsed by its kind module; one that does not parse throws). */
export function inputFromObjects(objects: readonly Resource[], nodeAddresses: readonly string[]): GatewayInput {
  const of = <K extends Resource['kind']>(k: K) => objects.filter((o): o is Extract<Resource, { kind: K }> => o.kind === k);
  return {
    controllerName: CONTROLLER_NAME,
    gatewayClasses: of('GatewayClass'),
    gateways: of('Gateway'),
    httpRoutes: of('HTTPRoute'),
    grpcRoutes: of('GRPCRoute'),
    referenceGrants: of('ReferenceGrant'),
    services: of('Service'),
    endpointSlices: of('EndpointSlice'),
    namespaces: of('Namespace'),
    backendTlsPolicies: of('BackendTLSPolicy'),
    configMaps: of('ConfigMap'),
    secrets: new Map(of('Secret').map((s) => [`${s.metadata.namespace ?? 'default'}/${s.metadata.name}`, secretData(s)])),
    nodeAddresses,
  };
}

export function parseObjectsYaml(text: string, origin: string): Resource[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as unknown)
    .filter((x) => x !== null && x !== undefined)
    .map((x, i) => {
      const r = parseResource(x);
      if (!r.ok) throw new Error(`${origin} document ${i}: ${r.problems.map((p) => `${formatPath(p.path)}: ${p.message}`).join('; ')}`);
      return r.value;
    });
}

/** What a golden file holds: resources (certificates shortened) and status. */
export function goldenView(model: GatewayModel): unknown {
  const res = translate(model);
  const short = (pem: string) => `<${pem.length} bytes of PEM>`;
  return {
    listeners: res.listeners,
    routes: res.routes,
    clusters: res.clusters,
    endpoints: res.endpoints,
    secrets: model.secrets.map((s) => ({ name: s.name, certificateChain: short(s.certificateChain), privateKey: short(s.privateKey) })),
    status: {
      gatewayClasses: Object.fromEntries(model.status.gatewayClasses),
      gateways: Object.fromEntries(model.status.gateways),
      routes: Object.fromEntries(model.status.routes),
      ...(model.status.backendTlsPolicies.size > 0 ? { backendTlsPolicies: Object.fromEntries(model.status.backendTlsPolicies) } : {}),
    },
  };
}

export function runCase(name: string): { actual: string; expectedPath: string; model: GatewayModel } {
  const dir = join(GOLDEN_DIR, name);
  const objects = parseObjectsYaml(readFileSync(join(dir, 'input.yaml'), 'utf8'), join(name, 'input.yaml'));
  const model = ingest(inputFromObjects(objects, [GOLDEN_NODE_ADDRESS]));
  return { actual: stringify(goldenView(model), { lineWidth: 0 }), expectedPath: join(dir, 'output.yaml'), model };
}

if (process.argv[1]?.endsWith('golden.js') && process.argv.includes('--update')) {
  const only = process.argv.slice(2).filter((a) => a !== '--update');
  for (const c of goldenCases().filter((x) => only.length === 0 || only.includes(x))) {
    const r = runCase(c);
    writeFileSync(r.expectedPath, r.actual);
    process.stdout.write(`updated ${c}\n`);
  }
}
