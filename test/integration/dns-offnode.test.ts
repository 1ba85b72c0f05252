/**
 * Transparent mode (dnsProxy.enableTransparentMode=true) beyond resolvers
 * that are local endpoints:
 *
 * - a resolver off the node (dnsmasq in another namespace reached through
 *   the node's routing, the test's stand-in for an upstream resolver): the
 *   query leaves from the pod's address and port; the answer, addressed to
 *   the pod, enters the node where meshd attaches no program and reaches the
 *   proxy's socket through the netfilter return rule (upstream-return.ts);
 * - a resolver behind a Service ClusterIP: with the pods' socket LB off
 *   (the datapath's tc LB translates), the proxy sees the VIP as the
 *   original destination, judges the query by the Service's backends (as the
 *   datapath did) and forwards to the VIP (the node's socket LB picks the
 *   backend); the pod gets its answer from the VIP, REFUSED for a denied
 *   name. (With the pods' socket LB on, the pod's socket already chose the
 *   backend, which is what the proxy sees and asks: a resolver by address,
 *   as in dns-transparent.test.ts and the off-node case here.)
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../../src/util/exec.js';
import { DnsWorld } from '../helpers/dns-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

/** dnsmasq's log lines (--log-queries=extra) for queries of `name`: the source address of each. */
function sourcesOf(log: string, name: string): string[] {
  return log
    .split('\n')
    .filter((l) => new RegExp(`query\\[A\\] ${name.replace(/\./g, '\\.')} from `).test(l))
    .map((l) => / from (\S+)$/.exec(l)?.[1] ?? '');
}

test('transparent mode to resolvers off the node and behind a ClusterIP', async (t) => {
  requirePrivileges();
  // The pods' socket LB off (Cilium's socketLB.hostNamespaceOnly): the datapath translates per packet and keeps the VIP for the proxy.
  const w = await DnsWorld.create(t, { 'dnsProxy.enableTransparentMode': true, 'socketLB.hostNamespaceOnly': true });
  const agent = () => {
    const a = w.node.running?.agent;
    assert.ok(a);
    return a;
  };
  const dns = () => {
    const d = agent().dnsService();
    assert.ok(d, 'the agent runs the DNS proxy');
    return d;
  };
  const vip = `10.${w.k}.80.10`;
  // web may also ask the off-node resolver (by CIDR), for names under example.com; kube-dns gets a ClusterIP.
  w.node.write(
    'offnode.yaml',
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: upstream-dns, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: web } }
  egress:
    - toCIDR: ["${w.offNodeResolver}/32"]
      toPorts:
        - ports: [{ port: "53", protocol: UDP }, { port: "53", protocol: TCP }]
          rules: { dns: [{ matchPattern: "*.example.com" }] }
---
apiVersion: v1
kind: Service
metadata: { name: kube-dns, namespace: kube-system }
spec:
  selector: { k8s-app: kube-dns }
  clusterIP: ${vip}
  clusterIPs: ["${vip}"]
  ports: [{ name: dns, port: 53, protocol: UDP }, { name: dns-tcp, port: 53, protocol: TCP }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: kube-dns-1, namespace: kube-system, labels: { kubernetes.io/service-name: kube-dns } }
addressType: IPv4
endpoints: [{ addresses: ["${w.resolver}"], conditions: { ready: true } }]
ports: [{ name: dns, port: 53, protocol: UDP }, { name: dns-tcp, port: 53, protocol: TCP }]
`,
  );
  await w.dnsmasq({ ttl: 300, logQueries: true });
  const off = await w.offNodeDnsmasq();
  const web = await w.client('web');
  for (let i = 0; i < 100 && !agent().engine.policyKeys().includes('CiliumNetworkPolicy/default/upstream-dns'); i++) await sleep(100);
  assert.ok(agent().engine.policyKeys().includes('CiliumNetworkPolicy/default/upstream-dns'), 'the policy is loaded');

  await t.test('the return rule is installed', async () => {
    const { stdout } = await run('iptables', ['-w', '5', '-t', 'mangle', '-S', 'PREROUTING']);
    assert.match(stdout, /! -i lxc\+ -m socket --transparent .*-j MARK --set-xmark 0xb00\/0xf00/);
  });

  await t.test('a resolver off the node: the query leaves from the pod, the answer comes back through the proxy; REFUSED for a denied name', async () => {
    for (const [proto, name] of [['udp', 'www.example.com'], ['tcp', 'short.example.com']] as const) {
      const before = (await dns().stats());
      const r = await web.call({ op: 'query', server: w.offNodeResolver, name, proto });
      assert.equal(r.rcode, 'NOERROR', `${proto}: ${JSON.stringify(r)}; resolver log: ${off.log()}`);
      assert.equal((await dns().stats()).allowed - before.allowed, 1, proto);
      assert.equal((await dns().stats()).upstreamErrors - before.upstreamErrors, 0, proto);
      assert.deepEqual([...new Set(sourcesOf(off.log(), name))], [w.pods.web.ip], `${proto}: the off-node resolver saw the pod's address`);
    }
    const no = await web.call({ op: 'query', server: w.offNodeResolver, name: 'api.github.com' });
    assert.equal(no.rcode, 'REFUSED', JSON.stringify(no));
    assert.deepEqual(sourcesOf(off.log(), 'api.github.com'), [], 'never reached the resolver');
    for (let i = 0; i < 20; i++) {
      const r = await web.call({ op: 'query', server: w.offNodeResolver, name: `n${i}.example.com` });
      assert.equal(r.rcode, 'NOERROR', JSON.stringify(r));
    }
  });

  await t.test('a ClusterIP resolver, socket LB off for the pods: the proxy sees and asks the VIP, from the pod', async () => {
    // On a node the agent runs in the cgroup where the socket LB hooks sit (the root): here, its own.
    writeFileSync(join(w.node.cgroup.path, 'cgroup.procs'), String(process.pid));
    const r = await web.call({ op: 'query', server: vip, name: 'n150.example.com', proto: 'udp' });
    assert.equal(r.rcode, 'NOERROR', `${JSON.stringify(r)}; proxy: ${JSON.stringify((await dns().recent()).slice(-2))} ${JSON.stringify(await dns().stats())}; drops: ${JSON.stringify(agent().recentFlows().filter((f) => f.type === "drop").slice(-3).map((f) => [f.src.ip, f.dst.ip, f.dst.port, f.dropReason]))}`);
    assert.deepEqual(r.answers?.map((a) => a.data), [w.inet(170)]);
    const rec = (await dns().recent()).filter((x) => x.name === 'n150.example.com');
    assert.deepEqual(rec.map((x) => [x.server, x.verdict]), [[`${vip}:53`, 'allowed']]);
    assert.deepEqual([...new Set(sourcesOf(w.dnsmasqLog(), 'n150.example.com'))], [w.pods.web.ip], 'the backend saw the pod');
    const no = await web.call({ op: 'query', server: vip, name: 'api.github.com' });
    assert.equal(no.rcode, 'REFUSED', JSON.stringify(no));
  });
});
