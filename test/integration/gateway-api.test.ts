/**
 * The Gateway API end to end on a real kube-apiserver (the v1.7.0 standard
 * CRDs) and the node's real Envoy (ProxyManager): the objects are read by
 * the resource source's reflectors, translated, served beside the L7-policy
 * listeners, and their status written by the Lease holder. The backend is a
 * plain HTTP server on loopback behind a Service and its EndpointSlice.
 *
 * Shows: a matching request reaches the backend with the request header
 * modifier applied and the response header added, over HTTP and over
 * HTTPS (certificate from a Secret, over SDS); no match is 404; a
 * redirect answers 301 with its Location; a route whose regular expression
 * RE2 refuses is Accepted=False (UnsupportedValue) while the rest keeps
 * serving; status (GatewayClass, Gateway with its address and listener,
 * routes) is written with observedGeneration; the Gateway's LoadBalancer
 * Service exists, owned by the Gateway.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { z } from 'zod';
import { KubeClient, resolveKubeConfig } from '../../src/k8s/client.js';
import { KubeSource } from '../../src/k8s/kube-source.js';
import { GatewayController } from '../../src/gateway/controller.js';
import { GATEWAY_KINDS, GATEWAY_REFERENCED_KINDS, GatewayService } from '../../src/gateway/gateway-service.js';
import { GOLDEN_DIR, parseObjectsYaml } from '../../src/gateway/golden.js';
import { gatewayServiceName } from '../../src/gateway/ingestion.js';
import type { Resource } from '../../src/k8s/kinds.js';
import { secretData, type Secret } from '../../src/k8s/secret.js';
import { ProxyManager } from '../../src/proxy/proxy-manager.js';
import { createLogger } from '../../src/util/log.js';
import { freePort, httpUpstream } from '../helpers/envoy.js';
import { startKubeCluster } from '../../src/devcluster/kube-cluster.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const ConditionsSchema = z.array(z.object({ type: z.string(), status: z.string(), reason: z.string(), observedGeneration: z.number().optional() }));
const RouteStatus = z.object({ metadata: z.object({ generation: z.number() }), status: z.object({ parents: z.array(z.object({ controllerName: z.string(), conditions: ConditionsSchema })) }).optional() });
const GatewayStatus = z.object({
  status: z.object({ addresses: z.array(z.object({ value: z.string() })).optional(), conditions: ConditionsSchema.optional(), listeners: z.array(z.object({ name: z.string(), attachedRoutes: z.number(), conditions: ConditionsSchema })).optional() }).optional(),
});
const ClassStatus = z.object({ status: z.object({ conditions: ConditionsSchema.optional() }).optional() });
const ServiceObj = z.object({ spec: z.object({ type: z.string() }), metadata: z.object({ ownerReferences: z.array(z.object({ kind: z.string(), name: z.string() })).optional() }) });

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(200);
  }
}

function mustSecret(r: Resource | undefined): Secret {
  assert.ok(r?.kind === 'Secret', 'the fixture has the Secret');
  return r;
}

const cond = (cs: z.infer<typeof ConditionsSchema> | undefined, type: string) => cs?.find((c) => c.type === type);

test('Gateway + HTTPRoute served by the node Envoy from a real API server; status written; a bad route does not stop the rest', async (t) => {
  requirePrivileges();
  // Torn down in this order, even when the test fails: what talks to the API server and Envoy first, the cluster last.
  const stops: Array<() => Promise<unknown>> = [];
  const cluster = await startKubeCluster();
  t.after(async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await cluster.close();
  });
  const crds = execFileSync('bash', ['scripts/gateway-api.sh', '--crds'], { encoding: 'utf8' }).trim();
  const created = await cluster.kubectl(['create', '-f', crds]);
  assert.equal(created.code, 0, created.stderr);
  const established = await cluster.kubectl(['wait', '--for', 'condition=established', '--timeout=60s', 'crd', '--all']);
  assert.equal(established.code, 0, established.stderr);

  // The backend listens on the host end of a veth this test creates (EndpointSlices refuse loopback addresses).
  const sb = new Sandbox('gwapi');
  t.after(() => sb.cleanup());
  const ns = await sb.netns('b');
  const backendIp = `10.251.${process.pid % 250}.1`;
  await sb.vethToHost(ns, { hostIf: sb.name('h'), podIf: 'eth0', hostIp: `${backendIp}/30`, podIp: `10.251.${process.pid % 250}.2/30` });
  const backend = await httpUpstream(t, backendIp);
  const port = await freePort();
  const tlsPort = await freePort();
  // The certificate of the golden case https-secret (CN and SAN www.example.com, self-signed).
  const cert = secretData(mustSecret(parseObjectsYaml(readFileSync(join(GOLDEN_DIR, 'https-secret', 'input.yaml'), 'utf8'), 'https-secret').find((o) => o.kind === 'Secret' && o.metadata.name === 'www-cert')));
  await cluster.apply(`
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: meshd}
spec: {controllerName: meshd.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: meshd
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners:
  - {name: http, port: ${port}, protocol: HTTP}
  - {name: https, port: ${tlsPort}, protocol: HTTPS, hostname: www.example.com, tls: {certificateRefs: [{name: www-cert}]}}
---
apiVersion: v1
kind: Secret
metadata: {name: www-cert, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: ${Buffer.from(cert['tls.crt'] ?? '').toString('base64')}, tls.key: ${Buffer.from(cert['tls.key'] ?? '').toString('base64')}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 8080, targetPort: ${backend.port}}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [${backendIp}], conditions: {ready: true}}]
ports: [{name: http, protocol: TCP, port: ${backend.port}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /app}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Gateway, value: meshd}], remove: [X-Drop]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: X-Served-By, value: gw}]}}
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: Exact, value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: new.example.com, statusCode: 301}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/api/v1/[a-z]{1,2000}"}}]
    backendRefs: [{name: web, port: 8080}]
`);

  const log = createLogger({ component: 'test' }, { level: 'warn' });
  const stateDir = mkdtempSync(join(tmpdir(), `meshd-gw-${process.pid}-`));
  stops.push(() => Promise.resolve(rmSync(stateDir, { recursive: true, force: true })));
  const proxy = await ProxyManager.start({ nodeName: 'gw-node', stateDir, portRange: [17100, 17199], xdsMode: 'delta', log, ackTimeoutMs: 15_000 });
  stops.push(() => proxy.stop());
  const client = new KubeClient(resolveKubeConfig({ kubeconfigPath: cluster.kubeconfigPath }).kubeConfig);
  const controller = new GatewayController({ client, holder: 'gw-node', namespace: 'default', retryMs: 200, log });
  controller.start();
  stops.push(() => controller.stop());
  const gateway = new GatewayService({ proxy, nodeAddresses: () => [], controller, log });
  stops.push(() => gateway.stop());
  const source = new KubeSource({ client, kinds: [...GATEWAY_KINDS, ...GATEWAY_REFERENCED_KINDS], kindPaths: { Secret: '/api/v1/secrets' }, batchDelayMs: 10, log });
  stops.push(() => source.stop());
  await source.start({
    onBatch: async (events) => {
      for (const ev of events) await gateway.apply(ev);
    },
    onProblems: (ps) => assert.fail(`source problems: ${JSON.stringify(ps)}`),
  });

  const base = `http://127.0.0.1:${port}`;
  // Served: the match reaches the backend, with the modifiers applied.
  const app = await eventually('the route to be served', async () => {
    const r = await request(`${base}/app/x`, { headers: { 'x-drop': 'yes', 'x-gateway': 'client' } });
    const body = await r.body.text();
    return r.statusCode === 200 ? { r, body } : undefined;
  });
  assert.equal(app.body, 'upstream GET /app/x');
  assert.equal(app.r.headers['x-served-by'], 'gw');
  const seen = backend.seen.at(-1);
  assert.equal(seen?.headers['x-gateway'], 'meshd');
  assert.equal(seen?.headers['x-drop'], undefined);

  // HTTPS: TLS terminated with the Secret's certificate (delivered over SDS), the same route behind it.
  const tls = new Agent({ connect: { ca: cert['tls.crt'], servername: 'www.example.com' } });
  t.after(() => tls.close());
  const secure = await eventually('the HTTPS listener', async () => {
    const r = await request(`https://127.0.0.1:${tlsPort}/app/tls`, { dispatcher: tls, headers: { host: 'www.example.com' } });
    const body = await r.body.text();
    return r.statusCode === 200 ? body : undefined;
  });
  assert.equal(secure, 'upstream GET /app/tls');

  // PathPrefix matches whole path elements; nothing else matches: 404.
  for (const path of ['/application', '/nope', '/api/v1/abc']) {
    const r = await request(`${base}${path}`);
    await r.body.dump();
    assert.equal(r.statusCode, 404, path);
  }
  const redirect = await request(`${base}/old`);
  await redirect.body.dump();
  assert.equal(redirect.statusCode, 301);
  assert.match(String(redirect.headers.location), /^http:\/\/new\.example\.com(:\d+)?\/old$/);

  // Status, written by the Lease holder.
  const get = (path: string) => cluster.kubectl(['get', '--raw', path]).then((r) => JSON.parse(r.stdout) as unknown);
  const badStatus = await eventually('the bad route\'s status', async () => {
    const s = RouteStatus.parse(await get('/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/bad'));
    return s.status?.parents[0] ? s : undefined;
  });
  const bad = badStatus.status?.parents[0];
  assert.equal(bad?.controllerName, 'meshd.io/gateway-controller');
  assert.equal(cond(bad?.conditions, 'Accepted')?.status, 'False');
  assert.equal(cond(bad?.conditions, 'Accepted')?.reason, 'UnsupportedValue');
  assert.equal(cond(bad?.conditions, 'Accepted')?.observedGeneration, badStatus.metadata.generation);
  const web = await eventually('the route\'s status', async () => RouteStatus.parse(await get('/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/web')).status?.parents[0]);
  assert.equal(cond(web.conditions, 'Accepted')?.status, 'True');
  assert.equal(cond(web.conditions, 'ResolvedRefs')?.status, 'True');
  const gw = await eventually('the Gateway\'s status', async () => {
    const s = GatewayStatus.parse(await get('/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/gw')).status;
    return cond(s?.conditions, 'Programmed')?.status === 'True' ? s : undefined;
  });
  assert.deepEqual(gw.addresses?.map((a) => a.value), ['127.0.0.1']);
  assert.equal(gw.listeners?.[0]?.attachedRoutes, 1);
  assert.equal(cond(gw.listeners?.[1]?.conditions, 'ResolvedRefs')?.status, 'True');
  assert.equal(cond(gw.listeners?.[0]?.conditions, 'Programmed')?.status, 'True');
  const gc = await eventually('the GatewayClass\'s status', async () => {
    const c = ClassStatus.parse(await get('/apis/gateway.networking.k8s.io/v1/gatewayclasses/meshd')).status?.conditions;
    return cond(c, 'Accepted')?.status === 'True' ? c : undefined;
  });
  assert.equal(cond(gc, 'SupportedVersion')?.status, 'True');
  const svc = await eventually('the Gateway\'s Service', async () => ServiceObj.parse(await get(`/api/v1/namespaces/default/services/${gatewayServiceName('gw')}`)));
  assert.equal(svc.spec.type, 'LoadBalancer');
  assert.deepEqual(svc.metadata.ownerReferences?.map((o) => `${o.kind}/${o.name}`), ['Gateway/gw']);

  // The route changes: the new path is served, the old one is gone; the bad route still changes nothing.
  await cluster.apply(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: web, port: 8080}]
`);
  await eventually('the changed route', async () => {
    const r = await request(`${base}/v2/y`);
    await r.body.dump();
    return r.statusCode === 200 ? true : undefined;
  });
  const gone = await request(`${base}/app/x`);
  await gone.body.dump();
  assert.equal(gone.statusCode, 404);
  assert.equal(gateway.view().lastError, null);
});
