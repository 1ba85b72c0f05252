/**
 * L7 HTTP policy end to end: the docs' HTTP example policy (YAML) → policy
 * engine → translator → xDS → the node's real Envoy (ProxyManager) → the
 * real kernel datapath (EndpointManager on veths) → pods in namespaces.
 *
 * Pods: client (A), api (B, HTTP on 8080 and 9090), intruder (C). The test
 * plays the agent's part: engine.flush() → proxy.apply() → only once Envoy
 * ACKed, dp.updatePolicy().
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProxyError } from '../../src/proxy/proxy-manager.js';
import { isMeshdError } from '../../src/util/errors.js';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import { collectFlows, type HttpOutcome, startHttpClient, startHttpServer } from '../helpers/l7-peers.js';
import { policyDocs, startL7World } from '../helpers/l7-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

const DEMO_POLICY = readFileSync(repoPath('examples', 'demo', 'api-policy.yaml'), 'utf8');

const CLIENT_EGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client-egress, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toEndpoints: [{ matchLabels: { app: api } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: [{ method: GET, path: /api/v1/users }] }
        - ports: [{ port: "9090", protocol: TCP }]
          rules: { http: [{ method: GET, path: /metrics }] }
    - toEndpoints: [{ matchLabels: { app: web } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: [{ method: GET }] }
`;

const INTRUDER_EGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: intruder-egress, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: intruder } }
  egress:
    - toEndpoints: [{ matchLabels: { app: api } }, { matchLabels: { app: web } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: [{ method: GET }] }
`;

// web has no L7 rules: it admits the client on 8080 and 8081 (where nothing listens) in the kernel, nobody else.
const WEB_INGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: web-l4, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: web } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }, { port: "8081", protocol: TCP }] }]
`;

// A counted repetition over 1000: a valid JavaScript regular expression, which RE2 (Envoy) rejects.
const BAD_EGRESS = CLIENT_EGRESS.replace('name: client-egress', 'name: client-bad').replace('path: /api/v1/users', 'path: "/api/v1/[a-z]{1,2000}"');

test('L7 HTTP policy through the node Envoy and the kernel datapath: ingress, egress, HTTP/2, gRPC, policy change, Envoy restart, NACK, identity by mark', async (t) => {
  requirePrivileges();
  const w = await startL7World(t, {
    tag: 'l7',
    octet: 88,
    portBase: 21000,
    pods: [['client', 0], ['api', 4], ['intruder', 8], ['web', 12]],
    policies: DEMO_POLICY + '---\n' + WEB_INGRESS,
  });
  const { sb, net, pod, engine, proxy, dp, routing, sync } = w;
  const A = pod('client');
  const B = pod('api');
  const C = pod('intruder');
  const D = pod('web');
  const hostB = net(5);
  const hostD = net(13);

  const srv = await startHttpServer(sb, B.ns, 'B', [8080, 9090]);
  const srvD = await startHttpServer(sb, D.ns, 'D', [8080]);
  const events = collectFlows(dp);
  t.after(() => events.close());
  const fromA = await startHttpClient(sb, A.ns, events);
  const fromC = await startHttpClient(sb, C.ns, events);
  const url = (port: number, path: string) => `http://${B.ip}:${port}${path}`;
  const get = (cli: typeof fromA, port: number, path: string, extra: { method?: string; headers?: Record<string, string>; h2?: boolean; grpc?: boolean; timeoutMs?: number } = {}) =>
    cli.request({ url: url(port, path), ...extra });
  const viaProxy = (a: HttpOutcome, method: string, path: string, port = 8080) =>
    assert.deepEqual(a, { kind: 'answered', status: 200, body: `B ${port} ${method} ${path} from ${hostB}` }, 'answered by the server, reached from the node (the proxy)');
  const denied = (a: HttpOutcome) => assert.deepEqual(a, { kind: 'denied', status: 403, body: 'Access denied' });
  const dropped = (a: HttpOutcome, reason: string, direction: 'ingress' | 'egress') => assert.deepEqual(a, { kind: 'dropped', reason, direction });
  const stat = async (name: string): Promise<number> => {
    const r = await proxy.adminRequest(`/stats?filter=${encodeURIComponent(`^${name.replaceAll('.', '\\.')}$`)}`);
    const m = new RegExp(`${name.replaceAll('.', '\\.')}: (\\d+)`).exec(r.body);
    return m ? Number(m[1]) : 0;
  };
  const ingressPort = proxy.proxyPort('http', 'ingress');
  const egressPort = proxy.proxyPort('http', 'egress');
  const cx = (port: number) => stat(`listener.0.0.0.0_${port}.downstream_cx_total`);
  const waitAls = async (pred: (r: ReturnType<typeof proxy.recentAccessLogs>[number]) => boolean) => {
    const end = Date.now() + 8000;
    while (Date.now() < end) {
      if (proxy.recentAccessLogs().some(pred)) return;
      await sleep(100);
    }
    assert.fail(`no matching access log; have ${JSON.stringify(proxy.recentAccessLogs().slice(-5))}`);
  };

  const first = await sync();
  assert.deepEqual(first.redirects, [{ endpointId: 'default/api', direction: 'ingress', kind: 'http', proxyPort: ingressPort }]);

  await t.test('ingress: the example rules allow exactly the listed requests; denied ones get 403 Access denied and never reach the server', async () => {
    viaProxy(await get(fromA, 8080, '/api/v1/users'), 'GET', '/api/v1/users');
    viaProxy(await get(fromA, 8080, '/api/v1/products'), 'GET', '/api/v1/products');
    viaProxy(await get(fromA, 8080, '/api/v1/orders', { method: 'POST', headers: { 'content-type': 'application/json' } }), 'POST', '/api/v1/orders');
    denied(await get(fromA, 8080, '/api/v1/orders', { method: 'POST', headers: { 'content-type': 'text/plain' } }));
    denied(await get(fromA, 8080, '/api/v1/users', { method: 'DELETE' }));
    denied(await get(fromA, 8080, '/admin'));
    assert.deepEqual(
      srv.requests().filter((l) => l.includes('/admin') || l.includes('DELETE') || l.includes('text/plain')),
      [],
      'denied requests never reached the server',
    );
    await waitAls((r) => r.verdict === 'DENIED' && r.path === '/admin' && r.status === 403);
    await waitAls((r) => r.verdict === 'FORWARDED' && r.path === '/api/v1/users' && r.source.startsWith(`${A.ip}:`));
    // The intruder is not allowed at all: the kernel drops its SYN at the api's ingress, before any proxy.
    dropped(await get(fromC, 8080, '/api/v1/users', { timeoutMs: 1500 }), 'POLICY_DEFAULT_DENY', 'ingress');
    // Allowed in the kernel, and nothing listens there: refused by web's TCP stack, not dropped.
    assert.deepEqual(await fromA.request({ url: `http://${D.ip}:8081/x`, timeoutMs: 1500 }), { kind: 'refused' });
  });

  await t.test('the port without L7 rules is reached directly: Envoy never sees those connections', async () => {
    const before = await cx(ingressPort);
    const logsBefore = proxy.recentAccessLogs().length;
    for (let i = 0; i < 3; i++) {
      const a = await get(fromA, 9090, '/metrics');
      assert.deepEqual(a, { kind: 'answered', status: 200, body: `B 9090 GET /metrics from ${A.ip}` }, 'straight from the client, not from the node');
    }
    await sleep(1500); // ALS flush interval
    assert.equal(await cx(ingressPort), before, 'no connection reached the ingress listener');
    // …while a request to the L7 port is counted there.
    viaProxy(await get(fromA, 8080, '/api/v1/users'), 'GET', '/api/v1/users');
    assert.equal(await cx(ingressPort), before + 1);
    assert.deepEqual(proxy.recentAccessLogs().slice(logsBefore).filter((r) => r.destination.endsWith(':9090')), []);
  });

  await t.test('HTTP/2 with prior knowledge and gRPC-shaped requests go through the same rules', async () => {
    viaProxy(await get(fromA, 8080, '/api/v1/users', { h2: true }), 'GET', '/api/v1/users');
    denied(await get(fromA, 8080, '/admin', { h2: true }));
    const g = await get(fromA, 8080, '/helloworld.Greeter/SayHello', { grpc: true });
    assert.deepEqual([g.kind, g.kind === 'denied' && g.grpcStatus], ['denied', '7'], `a denied gRPC call ends with PERMISSION_DENIED: ${JSON.stringify(g)}`);
    assert.deepEqual(srv.requests().filter((l) => l.includes('Greeter')), []);
    // HTTP/1.1 with "Upgrade: h2c" (curl --http2): the same rules apply; the answer stays HTTP/1.1.
    const h2c = async (path: string) => (await sb.exec(A.ns, 'curl', ['-s', '--http2', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code} %{http_version}', url(8080, path)])).stdout;
    assert.equal(await h2c('/api/v1/users'), '200 1.1');
    assert.equal(await h2c('/admin'), '403 1.1');
  });

  await t.test('WebSocket: an allowed request upgrades and the proxy relays the connection; a denied one gets 403', async () => {
    assert.deepEqual(await fromA.request({ url: url(8080, '/api/v1/users'), websocket: true }), { kind: 'answered', status: 101, body: 'B echo hello' });
    denied(await fromA.request({ url: url(8080, '/admin'), websocket: true }));
  });

  await t.test('a policy change takes effect on the next request, without restarting Envoy', async () => {
    const pid = proxy.status().envoy.pid;
    const changed = DEMO_POLICY.replace('- method: GET\n                path: /api/v1/products', '- method: POST\n                path: /helloworld.Greeter/SayHello');
    assert.notEqual(changed, DEMO_POLICY);
    for (const d of policyDocs(changed)) await engine.upsertPolicy(d);
    const r = await sync();
    assert.notEqual(r.version, first.version);
    const g = await get(fromA, 8080, '/helloworld.Greeter/SayHello', { grpc: true });
    assert.deepEqual(g, { kind: 'answered', status: 200, grpcStatus: '0', body: `B 8080 POST /helloworld.Greeter/SayHello from ${hostB}` });
    denied(await get(fromA, 8080, '/api/v1/products'));
    viaProxy(await get(fromA, 8080, '/api/v1/users'), 'GET', '/api/v1/users');
    assert.equal(proxy.status().envoy.pid, pid);
    assert.equal(proxy.status().envoy.restarts, 0);
    // Applying the same input again publishes nothing new.
    assert.equal((await sync()).version, r.version);
  });

  await t.test('Envoy killed mid-test is restarted and enforces the same rules', async () => {
    const pid = proxy.status().envoy.pid;
    assert.ok(pid);
    process.kill(pid, 'SIGKILL');
    const end = Date.now() + 30_000;
    while (!(proxy.status().envoy.state === 'ready' && proxy.status().envoy.pid !== pid)) {
      assert.ok(Date.now() < end, `envoy not back: ${JSON.stringify(proxy.status().envoy)}`);
      await sleep(100);
    }
    assert.equal(proxy.status().envoy.restarts, 1);
    viaProxy(await get(fromA, 8080, '/api/v1/users'), 'GET', '/api/v1/users');
    denied(await get(fromA, 8080, '/api/v1/products'));
    const g = await get(fromA, 8080, '/helloworld.Greeter/SayHello', { grpc: true });
    assert.deepEqual([g.kind, g.kind === 'answered' && g.grpcStatus], ['answered', '0']);
  });

  await t.test('a rule Envoy rejects: reported with Envoy\'s message, previous config in force, no redirect to a missing listener', async () => {
    for (const d of policyDocs(BAD_EGRESS)) await engine.upsertPolicy(d);
    const err = await sync().then(
      () => assert.fail('apply should have been rejected'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ProxyError && isMeshdError(err, 'MESHD_PROXY_NACKED'), String(err));
    assert.ok(err.envoyMessage, 'Envoy\'s message is carried along');
    assert.deepEqual(err.details.change, { listeners: ['meshd-http-egress'], endpoints: ['default/api', 'default/client'], policies: ['default/client-bad'] }, 'the rejection names what changed: the new listener, its endpoints and the policy behind it');
    assert.deepEqual([proxy.status().lastError?.code, proxy.status().lastNack?.message], ['MESHD_PROXY_NACKED', err.envoyMessage]);
    const listeners = await proxy.adminRequest('/listeners');
    assert.doesNotMatch(listeners.body, /meshd-http-egress/, 'Envoy has no egress listener');
    const clientEntries = [...(dp.endpoint('default/client')?.entries.values() ?? [])];
    assert.deepEqual(clientEntries.filter((e) => e.value.verdict === 'REDIRECT'), [], 'the datapath does not redirect the client to the missing egress listener');
    // The previous configuration is still enforced, and the client still reaches the api through the ingress path.
    viaProxy(await get(fromA, 8080, '/api/v1/users'), 'GET', '/api/v1/users');
    denied(await get(fromA, 8080, '/api/v1/products'));
    // Repairing the policy clears the rejection.
    assert.ok(await engine.removePolicy('CiliumNetworkPolicy/default/client-bad'));
    await sync();
    assert.equal(proxy.status().lastNack, null);
  });

  await t.test('egress: the client\'s egress rules and the api\'s ingress rules both apply; the upstream leg carries the client\'s identity', async () => {
    for (const d of policyDocs(CLIENT_EGRESS + '---\n' + INTRUDER_EGRESS)) await engine.upsertPolicy(d);
    const r = await sync();
    assert.deepEqual(
      r.redirects.map((x) => [x.endpointId, x.direction, x.proxyPort]),
      [
        ['default/api', 'ingress', ingressPort],
        ['default/client', 'egress', egressPort],
        ['default/intruder', 'egress', egressPort],
      ],
    );
    const before = await cx(egressPort);
    viaProxy(await get(fromA, 8080, '/api/v1/users'), 'GET', '/api/v1/users');
    // Allowed by the api's ingress rules, not by the client's egress rules.
    denied(await get(fromA, 8080, '/api/v1/orders', { method: 'POST', headers: { 'content-type': 'application/json' } }));
    // 9090: L7 egress rules of the client; the api admits the client there at L4.
    viaProxy(await get(fromA, 9090, '/metrics'), 'GET', '/metrics', 9090);
    denied(await get(fromA, 9090, '/debug'));
    assert.ok((await cx(egressPort)) >= before + 4, 'the connections went through the egress listener');
    await waitAls((x) => x.logName.endsWith('_egress_to_default_api') && x.path === '/debug' && x.verdict === 'DENIED');

    // The client's egress is default-deny now: what its rules do not list is dropped at its own egress.
    dropped(await fromA.request({ url: `http://${D.ip}:8081/x`, timeoutMs: 1500 }), 'POLICY_DEFAULT_DENY', 'egress');

    // The intruder's egress rule lets GET through, but the chain toward the api also applies the api's ingress
    // rules for the intruder's identity (none): 403 from the proxy, nothing reaches the server.
    const seen = srv.requests().length;
    denied(await get(fromC, 8080, '/api/v1/users'));
    assert.equal(srv.requests().length, seen, 'nothing reached the api');
  });

  await t.test('identity by mark: the destination\'s kernel admits the upstream leg of the client and refuses the intruder\'s', async () => {
    // web has no L7 rules, so the proxy applies only the callers' egress rules (both allow GET); web's ingress
    // policy (client only, in the kernel) judges the proxy's upstream leg by the identity in its mark.
    const a = await fromA.request({ url: `http://${D.ip}:8080/x` });
    assert.deepEqual(a, { kind: 'answered', status: 200, body: `D 8080 GET /x from ${hostD}` });
    const before = srvD.requests().length;
    const c = await fromC.request({ url: `http://${D.ip}:8080/x`, timeoutMs: 10_000 });
    assert.deepEqual([c.kind, c.kind === 'answered' && c.status], ['answered', 503], `Envoy answers 503: the intruder's upstream leg is dropped by web's datapath: ${JSON.stringify(c)}`);
    assert.ok(
      events.flows().some((f) => f.type === 'drop' && f.dropReason === 'POLICY_DEFAULT_DENY' && f.src.ip === hostD && f.dst.ip === D.ip && f.dst.port === 8080),
      'the upstream leg (from the node, with the intruder\'s identity) was dropped at web\'s ingress',
    );
    assert.equal(srvD.requests().length, before, 'nothing reached web');
    // Both connections went through Envoy (the intruder's was allowed by its egress rule, then refused in the kernel).
    await waitAls((x) => x.logName === 'default_intruder_egress' && x.status === 503);
  });

  await t.test('stop() is idempotent, stops Envoy and keeps the policy routing: redirected flows fail closed', async () => {
    const pid = proxy.status().envoy.pid;
    await proxy.stop();
    await proxy.stop();
    assert.equal(proxy.status().envoy.state, 'stopped');
    assert.ok(pid);
    assert.throws(() => process.kill(pid, 0), 'the Envoy process is gone');
    const rules = await run('ip', ['-4', 'rule', 'show', 'priority', String(routing.priority)]);
    assert.match(rules.stdout, new RegExp(`lookup ${routing.table}`));
    dropped(await get(fromA, 8080, '/api/v1/users', { timeoutMs: 1500 }), 'PROXY_UNAVAILABLE', 'egress');
    // The client reaches web only through its egress L7 rules: fails closed too.
    dropped(await fromA.request({ url: `http://${D.ip}:8080/x`, timeoutMs: 1500 }), 'PROXY_UNAVAILABLE', 'egress');
  });

  await t.test('a new ProxyManager on the same state directory (agent restart) keeps the proxy ports and serves the same rules', async () => {
    const again = await w.restartProxy('sotw');
    assert.equal(again.proxyPort('http', 'ingress'), ingressPort);
    assert.equal(again.proxyPort('http', 'egress'), egressPort);
    engine.flush();
    const identityIps = new Map<number, string[]>();
    for (const e of engine.ipcache()) identityIps.set(e.identity, [...(identityIps.get(e.identity) ?? []), e.prefix]);
    const policies = engine.endpointPolicies().filter((p) => w.pods.has(p.endpointId));
    await again.apply({ endpoints: policies.map((policy) => ({ policy, ips: [pod(policy.endpointId.split('/')[1] ?? '').ip] })), identityIps });
    // The datapath was never touched: its REDIRECT entries point at the same ports, and traffic flows again.
    viaProxy(await get(fromA, 8080, '/api/v1/users'), 'GET', '/api/v1/users');
    denied(await get(fromA, 8080, '/api/v1/products'));
    const rules = await run('ip', ['-4', 'rule', 'show', 'priority', String(routing.priority)]);
    assert.equal(rules.stdout.trim().split('\n').length, 1, 'the routing rule was not added twice');
  });
});
