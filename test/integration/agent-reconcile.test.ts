/**
 * The agent's reconcile ordering against a real Envoy and the real kernel:
 * a policy change reaches the datapath only once Envoy has ACKed the proxy
 * configuration it needs.
 *
 * - NACK (a path regex JavaScript accepts and Envoy's RE2 rejects): Envoy
 *   keeps the previous listeners, the endpoint keeps its previous entries in
 *   the kernel's policy map, and status shows the endpoint pending and the
 *   proxy error with its code; a good policy afterwards recovers.
 * - ACK timeout (Envoy stopped with SIGSTOP during a change, short ACK
 *   timeout): the same, status says the proxy did not answer; SIGCONT, and
 *   the late ACK lets the held-back entries in without any other change.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { z } from 'zod';
import { BpfMap } from '../../native/index.js';
import type { AgentConfig } from '../../src/agent/config.js';
import { PolicyKey, PolicyValue } from '../../src/datapath/maps.js';
import { verdictFromCode } from '../../src/datapath/endpoint/policy-map-state.js';
import { ProxyManager } from '../../src/proxy/proxy-manager.js';
import type { Logger } from '../../src/util/log.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { type HttpOutcome, startHttpClient, startHttpServer } from '../helpers/l7-peers.js';
import { requirePrivileges } from '../helpers/privileged.js';

const ACK_TIMEOUT_MS = 3000;

const egress = (pod: string, path: string) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: ${pod}-egress, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: ${pod} } }
  egress:
    - toEndpoints: [{ matchLabels: { app: api } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: [{ method: GET, path: "${path}" }] }
`;

// A counted repetition over 1000: a valid JavaScript regular expression (the policy engine accepts it), which RE2 (Envoy) rejects.
const REJECTED_BY_ENVOY = '/api/v1/[a-z]{1,2000}';

const failureSchema = z.object({ code: z.string(), version: z.string(), change: z.object({ listeners: z.array(z.string()), endpoints: z.array(z.string()), policies: z.array(z.string()) }) });
const statusSchema = z.object({
  proxy: z.object({ version: z.string(), error: z.string().nullable(), errorCode: z.string().nullable() }).nullable(),
  envoy: z.object({
    envoy: z.object({ state: z.string(), pid: z.number().optional() }),
    xds: z.object({ types: z.object({ listeners: z.object({ acked: z.object({ snapshotVersion: z.string() }).optional() }).optional() }) }),
    lastError: failureSchema.nullable(),
  }),
  datapath: z.object({ pending: z.record(z.string(), z.string()) }),
});
const endpointsSchema = z.object({ endpoints: z.array(z.object({ id: z.string(), pending: z.string().nullable() })) });
const activeListenerSchema = z.object({ listener: z.object({ filter_chains: z.array(z.object({ name: z.string() })).optional() }) });
const listenersDumpSchema = z.object({
  configs: z.array(z.object({ name: z.string(), active_state: activeListenerSchema.optional(), warming_state: activeListenerSchema.optional() })).optional(),
});

test('agent reconcile ordering with a real Envoy: NACK and ACK timeout keep the previous proxy and datapath state; recovery', async (t) => {
  requirePrivileges();
  const node = new AgentNode({ 'envoy.enabled': true, 'bpf.events.sampleNewConnections': 1 }, 1);
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true });
  copyFileSync(repoPath('examples', 'demo', 'pods.yaml'), join(node.manifests, 'pods.yaml'));
  copyFileSync(repoPath('examples', 'demo', 'api-policy.yaml'), join(node.manifests, 'api-policy.yaml'));

  // The agent's own proxy, with a short ACK timeout so that a stopped Envoy is noticed quickly.
  let proxy: ProxyManager | null = null;
  const startProxy = async (cfg: AgentConfig, log: Logger) => {
    proxy = await ProxyManager.start({ nodeName: cfg.nodeName, stateDir: cfg.stateDir, portRange: cfg['proxy.portRange'], xdsMode: cfg['envoy.xdsMode'], log, ackTimeoutMs: ACK_TIMEOUT_MS });
    return proxy;
  };
  const running = await node.start({ startProxy });
  const pm = (): ProxyManager => {
    assert.ok(proxy);
    return proxy;
  };
  const agent = running.agent;
  const client = await node.addPod('client');
  const api = await node.addPod('api');
  const intruder = await node.addPod('intruder');
  await startHttpServer(node.sb, api.ns, 'api', [8080]);
  const flows = { flows: () => agent.recentFlows() };
  const fromClient = await startHttpClient(node.sb, client.ns, flows);
  const fromIntruder = await startHttpClient(node.sb, intruder.ns, flows);
  const get = (from: typeof fromClient, path: string, timeoutMs = 3000): Promise<HttpOutcome> => from.request({ url: `http://${api.ip}:8080${path}`, timeoutMs });
  /** Answered by the api, over a connection from the node (Envoy's upstream leg), not from the client itself. */
  const viaProxy = (o: HttpOutcome, path: string) => {
    assert.equal(o.kind === 'answered' && o.status, 200, JSON.stringify(o));
    const from = o.kind === 'answered' ? /^api 8080 GET (\S+) from (\S+)$/.exec(o.body) : null;
    assert.equal(from?.[1], path, JSON.stringify(o));
    assert.ok(from?.[2] && from[2] !== client.ip && from[2] !== intruder.ip, `reached through the proxy: ${JSON.stringify(o)}`);
  };
  const denied = (o: HttpOutcome) => assert.deepEqual(o, { kind: 'denied', status: 403, body: 'Access denied' });

  const cli = async (...args: string[]): Promise<unknown> => {
    const { stdout } = await promisify(execFile)(process.execPath, [repoPath('bin', 'meshd.mjs'), ...args, '-o', 'json', '--api-socket', agent.socketPath('meshd')]);
    return JSON.parse(stdout);
  };
  const status = async () => statusSchema.parse(await cli('status'));
  const pendingEndpoints = async () => endpointsSchema.parse(await cli('endpoint', 'list')).endpoints.filter((e) => e.pending !== null).map((e) => e.id);
  /** What Envoy itself runs (admin API): its active dynamic listeners and their per-endpoint filter chains ("<ns>/<pod>/<direction>…"). */
  const envoyListeners = async (): Promise<Record<string, string[]>> => {
    const r = await pm().adminRequest('/config_dump?resource=dynamic_listeners');
    assert.equal(r.status, 200, r.body);
    const configs = listenersDumpSchema.parse(JSON.parse(r.body)).configs ?? [];
    return Object.fromEntries(configs.filter((c) => c.active_state).map((c) => [c.name, (c.active_state?.listener.filter_chains ?? []).map((f) => f.name).filter((n) => n.includes('/')).sort()]));
  };
  /** The endpoint's rows in the kernel's policy maps, read from the pins (not from the agent's memory). */
  const kernelRows = (endpointId: string): string[] => {
    const epId = agent.kernelPolicy(endpointId)?.epId;
    assert.ok(epId !== undefined, endpointId);
    const rows: string[] = [];
    for (const name of ['meshd_policy', 'meshd_pol_exact']) {
      const m = BpfMap.fromPin(join(agent.pinDir, name));
      try {
        for (const [k, v] of m.dump()) {
          const key = PolicyKey.decode(k);
          if (key.ep_id !== epId) continue;
          const val = PolicyValue.decode(v);
          rows.push(`${key.egress ? 'egress' : 'ingress'} id${key.identity} ${key.proto}/${key.dport} ${verdictFromCode(val.verdict) ?? val.verdict}${val.proxy_port ? `->${val.proxy_port}` : ''}`);
        }
      } finally {
        m.close();
      }
    }
    return rows.sort();
  };
  const until = async (what: string, fn: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!(await fn())) {
      if (Date.now() > end) assert.fail(`timed out waiting for ${what}; status ${JSON.stringify(agent.status())}`);
      await sleep(200);
    }
  };
  const settled = async () => {
    const s = await status();
    return Object.keys(s.datapath.pending).length === 0 && s.envoy.lastError === null && s.proxy?.error === null && s.proxy.errorCode === null;
  };

  // Before: the api's ingress rules in Envoy; the client and the intruder have no egress policy.
  await until('the first configuration to settle', settled);
  viaProxy(await get(fromClient, '/api/v1/users'), '/api/v1/users');
  denied(await get(fromClient, '/admin'));
  assert.deepEqual(await get(fromIntruder, '/api/v1/users', 1500), { kind: 'dropped', reason: 'POLICY_DEFAULT_DENY', direction: 'ingress' });
  const v1 = await envoyListeners();
  assert.deepEqual(Object.keys(v1), ['meshd-http-ingress']);
  assert.ok(v1['meshd-http-ingress']?.includes('default/api/ingress/any'), JSON.stringify(v1));
  const clientRows = kernelRows('default/client');
  assert.ok(!clientRows.some((r) => r.includes('REDIRECT')), clientRows.join('\n'));
  const egressPort = pm().proxyPort('http', 'egress');

  await t.test('a NACK keeps the previous Envoy configuration and the endpoint\'s previous kernel policy; status shows it with the code', async () => {
    node.write('client-egress.yaml', egress('client', REJECTED_BY_ENVOY));
    await until('the NACK to show in status', async () => (await status()).envoy.lastError?.code === 'MESHD_PROXY_NACKED');
    const s = await status();
    assert.deepEqual(s.envoy.lastError?.change, { listeners: ['meshd-http-egress'], endpoints: ['default/api', 'default/client'], policies: ['default/client-egress'] });
    assert.equal(s.proxy?.errorCode, 'MESHD_PROXY_NACKED', 'the agent reports the proxy error with its code');
    assert.deepEqual(Object.keys(s.datapath.pending), ['default/client'], 'the client waits for the proxy');
    assert.deepEqual(await pendingEndpoints(), ['default/client']);
    assert.deepEqual(await envoyListeners(), v1, 'Envoy runs the previous listeners: no egress listener');
    assert.deepEqual(kernelRows('default/client'), clientRows, 'the kernel keeps the client\'s previous policy: no redirect to a listener Envoy lacks');
    // …and the previous behaviour: the client reaches the api through the api's ingress rules only.
    viaProxy(await get(fromClient, '/api/v1/users'), '/api/v1/users');
    denied(await get(fromClient, '/admin'));
  });

  await t.test('recovery from the NACK: a policy Envoy accepts is in Envoy and in the kernel, nothing pending', async () => {
    node.write('client-egress.yaml', egress('client', '/api/v1/users'));
    await until('the repaired policy to settle', settled);
    const s = await status();
    const listeners = await envoyListeners();
    assert.deepEqual(listeners['meshd-http-egress'], ['default/client/egress', 'default/client/egress/to/default/api']);
    assert.deepEqual(listeners['meshd-http-ingress'], v1['meshd-http-ingress']);
    assert.equal(s.envoy.xds.types.listeners?.acked?.snapshotVersion, s.proxy?.version, 'Envoy ACKed the version the agent applied');
    assert.ok(kernelRows('default/client').some((r) => r.endsWith(`REDIRECT->${egressPort}`)), 'the client\'s egress is redirected to the egress listener');
    viaProxy(await get(fromClient, '/api/v1/users'), '/api/v1/users');
    // Allowed by the api's ingress rules, not by the client's new egress rules: 403 from Envoy now.
    denied(await get(fromClient, '/api/v1/products'));
  });

  await t.test('an ACK timeout (Envoy stopped) keeps the previous state and says so; after SIGCONT the late ACK lets the change in', async (st) => {
    // Envoy done with the previous change (no listener warming or draining) before it is stopped.
    const stat = async (name: string) => Number(new RegExp(`^${name.replaceAll('.', '\\.')}: (\\d+)$`, 'm').exec((await pm().adminRequest(`/stats?filter=${name}`)).body)?.[1] ?? NaN);
    await until('Envoy to settle its listeners', async () => (await stat('listener_manager.total_listeners_draining')) === 0 && (await stat('listener_manager.total_listeners_warming')) === 0);
    const pid = (await status()).envoy.envoy.pid;
    assert.ok(pid);
    const acked = (await status()).envoy.xds.types.listeners?.acked?.snapshotVersion;
    const listeners = await envoyListeners();
    assert.ok(!listeners['meshd-http-egress']?.includes('default/intruder/egress'), JSON.stringify(listeners));
    const intruderRows = kernelRows('default/intruder');
    process.kill(pid, 'SIGSTOP');
    let stopped = true;
    // Before the node's cleanup (which stops Envoy): a stopped Envoy would only go on SIGKILL.
    st.after(() => {
      if (stopped) process.kill(pid, 'SIGCONT');
    });

    // A change that needs Envoy: the intruder gets egress L7 rules (new redirects for it).
    node.write('intruder-egress.yaml', egress('intruder', '/api/v1/.*'));
    await until('the ACK timeout to show in status', async () => (await status()).envoy.lastError?.code === 'MESHD_PROXY_ACK_TIMEOUT', ACK_TIMEOUT_MS + 15_000);
    const s = await status();
    assert.deepEqual(s.envoy.lastError?.change.policies, ['default/intruder-egress']);
    assert.equal(s.proxy?.errorCode, 'MESHD_PROXY_ACK_TIMEOUT', 'the agent reports the timeout with its code');
    assert.deepEqual(Object.keys(s.datapath.pending), ['default/intruder']);
    assert.equal(s.envoy.xds.types.listeners?.acked?.snapshotVersion, acked, 'Envoy ACKed nothing newer');
    assert.deepEqual(kernelRows('default/intruder'), intruderRows, 'the intruder keeps its previous kernel policy');
    // The kernel still drops the intruder at the api; the client's redirected connection reaches the stopped
    // Envoy's listening socket (the kernel completes the handshake) and gets no answer.
    assert.deepEqual(await get(fromIntruder, '/api/v1/users', 1500), { kind: 'dropped', reason: 'POLICY_DEFAULT_DENY', direction: 'ingress' });
    assert.deepEqual(await get(fromClient, '/api/v1/users', 1500), { kind: 'timed-out' });

    process.kill(pid, 'SIGCONT');
    stopped = false;
    // No other change: the late ACK alone must let the held-back policy in.
    await until('the late ACK to settle everything', settled, 30_000);
    // ACKed means accepted; the listener turns active once warm.
    // ACKed means accepted; the updated listener turns active once warm.
    await until('Envoy to run the intruder\'s egress chains', async () => (await envoyListeners())['meshd-http-egress']?.includes('default/intruder/egress') === true, 10_000);
    const s2 = await status();
    assert.equal(s2.envoy.xds.types.listeners?.acked?.snapshotVersion, s2.proxy?.version, 'Envoy ACKed the version the agent applied');
    assert.ok(kernelRows('default/intruder').some((r) => r.endsWith(`REDIRECT->${egressPort}`)), 'the intruder\'s egress is redirected now');
    assert.deepEqual(await pendingEndpoints(), []);
    // The intruder's egress rule lets GET through; the chain toward the api applies the api's ingress rules too (none for it): 403.
    denied(await get(fromIntruder, '/api/v1/users'));
    viaProxy(await get(fromClient, '/api/v1/users'), '/api/v1/users');
  });
});
