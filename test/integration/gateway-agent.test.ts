/**
 * The agent's own wiring of the Gateway API (gatewayAPI.enabled): a
 * standalone agent with its Envoy reads a GatewayClass, Gateway, HTTPRoute,
 * Service and EndpointSlice from its manifest directory and serves the
 * route and its redirects; a route file with a regular expression RE2 refuses changes nothing
 * that is served; an edited route is served in its new form.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { AgentNode } from '../helpers/agent-node.js';
import { freePort, httpUpstream } from '../helpers/envoy.js';
import { requirePrivileges } from '../helpers/privileged.js';

async function status(url: string): Promise<number> {
  try {
    const r = await request(url);
    await r.body.dump();
    return r.statusCode;
  } catch {
    return 0;
  }
}

async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

const route = (path: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: ${path}}}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: Exact, value: /to-https}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
  - matches: [{path: {type: Exact, value: /to-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]
  - matches: [{path: {type: Exact, value: /to-port}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8443}}]
`;

test('an agent with gatewayAPI.enabled serves the Gateways of its manifests on its Envoy', async (t) => {
  requirePrivileges();
  const node = new AgentNode({ 'envoy.enabled': true, 'gatewayAPI.enabled': true }, 3);
  t.after(() => node.cleanup());
  const backend = await httpUpstream(t);
  const port = await freePort();
  mkdirSync(node.manifests, { recursive: true });
  node.write(
    'gateway.yaml',
    `
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
  listeners: [{name: http, port: ${port}, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [127.0.0.1]}]
ports: [{name: http, protocol: TCP, port: ${backend.port}}]
`,
  );
  node.write('route.yaml', route('/app'));
  const running = await node.start();
  const base = `http://127.0.0.1:${port}`;
  await until('the route to be served', async () => (await status(`${base}/app/1`)) === 200);
  assert.equal(backend.seen.at(-1)?.url, '/app/1');
  assert.equal(await status(`${base}/other`), 404);
  // Redirect ports as the spec derives them: a new scheme's well-known port (omitted), else the listener's.
  const location = async (p: string) => {
    const r = await request(`${base}${p}`, { headers: { host: `gw.example.com:${port}` } });
    await r.body.dump();
    assert.equal(r.statusCode, 302, p);
    return String(r.headers.location);
  };
  assert.equal(await location('/to-https'), 'https://gw.example.com/to-https');
  assert.equal(await location('/to-host'), `http://example.org:${port}/to-host`);
  assert.equal(await location('/to-port'), 'http://gw.example.com:8443/to-port');

  node.write('bad.yaml', route('/x').replace('name: web, namespace', 'name: bad, namespace').replace('type: PathPrefix, value: /x', 'type: RegularExpression, value: "/(?=x)"'));
  node.write('route.yaml', route('/v2'));
  await until('the edited route', async () => (await status(`${base}/v2/1`)) === 200);
  assert.equal(await status(`${base}/app/1`), 404);
  assert.equal(running.agent.gateway?.view().lastError, null);
  assert.deepEqual(running.agent.gateway?.view().gateways, ['default/gw']);
});
