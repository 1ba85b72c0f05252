/**
 * Kafka policy on the node as the agent runs it: the example policy
 * (examples/policies/l7-kafka.yaml) → policy engine → translator → xDS → the
 * node's real Envoy (ProxyManager, which runs the Kafka processor) → the real
 * kernel datapath (EndpointManager on veths) → pods in namespaces: a real
 * Kafka 4.4 broker in the kafka pod, kafkajs clients in the order-service and
 * analytics-service pods; Envoy killed mid-stream, then the agent's proxy
 * manager (Envoy and the processor) restarted. The test plays the agent's part: engine.flush() →
 * proxy.apply() → only once Envoy ACKed, dp.updatePolicy().
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import { loadPolicyText, PolicyEngine } from '../../src/policy/index.js';
import { removePolicyRouting } from '../../src/proxy/policy-routing.js';
import { ProxyManager } from '../../src/proxy/proxy-manager.js';
import { run } from '../../src/util/exec.js';
import { createLogger } from '../../src/util/log.js';
import { repoPath } from '../../src/util/paths.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { startKafkaBroker, startKafkaClient } from '../helpers/kafka-broker.js';
import { Sandbox } from '../helpers/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const EXAMPLE = readFileSync(repoPath('examples', 'policies', 'l7-kafka.yaml'), 'utf8');

// A later edit: analytics-service may produce to orders too.
const ANALYTICS_PRODUCE = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: analytics-produce, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: kafka } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: analytics-service } }]
      toPorts:
        - ports: [{ port: "9092", protocol: TCP }]
          rules: { kafka: [{ role: produce, topic: orders }] }
`;

function policyDocs(text: string) {
  const r = loadPolicyText(text);
  assert.deepEqual(r.problems, []);
  return r.policies.map((p) => p.document);
}

test('Kafka policy through the node Envoy, the Kafka processor and the kernel datapath, against a real broker', { timeout: 300_000 }, async (t) => {
  requirePrivileges();
  const sb = new Sandbox('kdp');
  t.after(() => sb.cleanup());
  const pins = tempPinDir('kdp');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const stateDir = mkdtempSync(join(tmpdir(), 'meshd-kafka-dp-'));
  t.after(() => rmSync(stateDir, { recursive: true, force: true }));

  const k = 100 + (process.pid % 150);
  const net = (n: number) => `10.${k}.89.${n}`;
  const routing = { mark: 0xb00, mask: 0xf00, table: 40000 + (process.pid % 20000), priority: 8000 + (process.pid % 1000) };
  const portBase = 23000 + (process.pid % 1000) * 10;

  const pods = new Map<string, { ns: string; hostIf: string; ip: string }>();
  for (const [name, n] of [['kafka', 0], ['order-service', 4], ['analytics-service', 8]] as const) {
    const ns = await sb.netns(name.slice(0, 3));
    const hostIf = sb.name(`h${name.slice(0, 2)}`);
    await sb.vethToHost(ns, { hostIf, podIf: 'eth0', hostIp: `${net(n + 1)}/30`, podIp: `${net(n + 2)}/30`, defaultRoute: true });
    await run('sysctl', ['-qw', `net.ipv4.conf.${hostIf}.forwarding=1`]);
    pods.set(`default/${name}`, { ns, hostIf, ip: net(n + 2) });
  }
  const pod = (name: string) => {
    const p = pods.get(`default/${name}`);
    assert.ok(p);
    return p;
  };
  const broker = pod('kafka');

  const engine = new PolicyEngine();
  await engine.upsertNamespace('default');
  for (const [id, p] of pods) {
    const name = id.split('/')[1] ?? '';
    await engine.upsertEndpoint({ namespace: 'default', name, labels: { app: name }, ips: [p.ip] });
  }
  for (const d of policyDocs(EXAMPLE)) await engine.upsertPolicy(d);
  engine.flush();

  const log = createLogger({ test: 'kafka-dp' }, { level: 'warn' });
  t.after(() => removePolicyRouting(routing));
  const proxy = await ProxyManager.start({ nodeName: `kafka-dp-${process.pid}`, stateDir, portRange: [portBase, portBase + 9], xdsMode: 'delta', log, routing, ackTimeoutMs: 20_000 });
  t.after(() => proxy.stop());
  const dp = await EndpointManager.open({ pinDir: pins.path, proxyPort: (kind, dir) => proxy.proxyPort(kind, dir) });
  t.after(() => dp.close());
  for (const [id, p] of pods) {
    const identity = engine.endpointIdentity(id);
    assert.ok(identity !== undefined);
    await dp.addEndpoint({ endpointId: id, ifname: p.hostIf, identity, ips: [p.ip] });
  }
  const sync = async () => {
    engine.flush();
    const policies = engine.endpointPolicies().filter((p) => pods.has(p.endpointId));
    const ipcache = engine.ipcache();
    const identityIps = new Map<number, string[]>();
    for (const e of ipcache) identityIps.set(e.identity, [...(identityIps.get(e.identity) ?? []), e.prefix]);
    const r = await proxy.apply({ endpoints: policies.map((policy) => ({ policy, ips: [pod(policy.endpointId.split('/')[1] ?? '').ip] })), identityIps });
    dp.syncIpcache(ipcache);
    for (const p of policies) dp.updatePolicy(p);
    return r;
  };
  const first = await sync();
  assert.deepEqual(first.unsupported, []);
  assert.deepEqual(first.redirects, [{ endpointId: 'default/kafka', direction: 'ingress', kind: 'kafka', proxyPort: proxy.proxyPort('kafka', 'ingress') }]);

  await startKafkaBroker(t, { netns: broker.ns, ip: broker.ip, port: 9092 });
  const address = `${broker.ip}:9092`;
  // Inside the broker's pod: local traffic, no datapath, no proxy.
  const setup = await startKafkaClient(sb, broker.ns, address);
  assert.equal((await setup.send({ op: 'createTopics', clientId: 'setup', topics: ['orders', 'order-events'] })).ok, true);
  assert.equal((await setup.send({ op: 'produce', clientId: 'setup', topic: 'order-events', value: 'event 1' })).ok, true);

  const order = await startKafkaClient(sb, pod('order-service').ns, address);
  const analytics = await startKafkaClient(sb, pod('analytics-service').ns, address);

  // Allowed produce; a denied produce gets error 29 in kafkajs's own error; the next allowed one succeeds.
  const produced = await order.send({ op: 'produce', clientId: 'order-service', topic: 'orders', value: 'order 1' });
  assert.deepEqual([produced.ok, produced.errorCode], [true, 0], JSON.stringify(produced));
  const forged = await order.send({ op: 'produce', clientId: 'order-service', topic: 'order-events', value: 'forged' });
  assert.equal(forged.ok, false);
  assert.equal(forged.type, 'TOPIC_AUTHORIZATION_FAILED');
  assert.equal((await order.send({ op: 'produce', clientId: 'order-service', topic: 'orders', value: 'order 2' })).ok, true);

  // Allowed consume in the order service's group.
  const events = await order.send({ op: 'consume', clientId: 'order-service', topic: 'order-events', groupId: 'order-consumer-group', count: 1 });
  assert.deepEqual(events.values, ['event 1']);

  // analytics-service consumes orders but may not produce to it.
  const seen = await analytics.send({ op: 'consume', clientId: 'analytics-service', topic: 'orders', groupId: 'analytics', count: 2 });
  assert.deepEqual(seen.values?.sort(), ['order 1', 'order 2']);
  const refused = await analytics.send({ op: 'produce', clientId: 'analytics-service', topic: 'orders', value: 'not mine' });
  assert.equal(refused.type, 'TOPIC_AUTHORIZATION_FAILED');

  // An unlisted client ID from order-service's pod is refused.
  const rogue = await order.send({ op: 'connect', clientId: 'rogue' });
  assert.equal(rogue.ok, false);
  assert.equal(rogue.type, 'CLUSTER_AUTHORIZATION_FAILED');

  // A policy edit takes effect on the next request (the analytics producer's connection stays open).
  for (const d of policyDocs(ANALYTICS_PRODUCE)) await engine.upsertPolicy(d);
  await sync();
  assert.equal((await analytics.send({ op: 'produce', clientId: 'analytics-service', topic: 'orders', value: 'allowed now' })).ok, true);

  // Envoy killed mid-stream: the supervisor restarts it, the clients reconnect and go on under the same rules.
  const pid = proxy.status().envoy.pid;
  assert.ok(pid);
  process.kill(pid, 'SIGKILL');
  const end = Date.now() + 30_000;
  while (!(proxy.status().envoy.state === 'ready' && proxy.status().envoy.pid !== pid)) {
    assert.ok(Date.now() < end, `envoy not back: ${JSON.stringify(proxy.status().envoy)}`);
    await sleep(100);
  }
  const after = await order.send({ op: 'produce', clientId: 'order-service', topic: 'orders', value: 'order 3' });
  assert.equal(after.ok, true, JSON.stringify(after));
  assert.equal((await order.send({ op: 'produce', clientId: 'order-service', topic: 'order-events', value: 'forged' })).type, 'TOPIC_AUTHORIZATION_FAILED');

  // Agent restart mid-stream: the proxy manager (Envoy and the Kafka processor) stops and a new one starts on the
  // same state directory; the datapath keeps redirecting to the same port; the clients reconnect.
  const kafkaPort = proxy.proxyPort('kafka', 'ingress');
  await proxy.stop();
  const again = await ProxyManager.start({ nodeName: `kafka-dp-${process.pid}`, stateDir, portRange: [portBase, portBase + 9], xdsMode: 'delta', log, routing, ackTimeoutMs: 20_000 });
  t.after(() => again.stop());
  assert.equal(again.proxyPort('kafka', 'ingress'), kafkaPort);
  engine.flush();
  const identityIps = new Map<number, string[]>();
  for (const e of engine.ipcache()) identityIps.set(e.identity, [...(identityIps.get(e.identity) ?? []), e.prefix]);
  const policies = engine.endpointPolicies().filter((p) => pods.has(p.endpointId));
  await again.apply({ endpoints: policies.map((policy) => ({ policy, ips: [pod(policy.endpointId.split('/')[1] ?? '').ip] })), identityIps });
  const resumed = await order.send({ op: 'produce', clientId: 'order-service', topic: 'orders', value: 'order 4' });
  assert.equal(resumed.ok, true, JSON.stringify(resumed));
  assert.equal((await analytics.send({ op: 'produce', clientId: 'analytics-service', topic: 'orders', value: 'still allowed' })).ok, true);
  assert.equal((await order.send({ op: 'produce', clientId: 'order-service', topic: 'order-events', value: 'forged' })).type, 'TOPIC_AUTHORIZATION_FAILED');
});
