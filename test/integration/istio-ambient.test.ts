/**
 * What Istio ambient needs from the node's data plane, on the real kernel with
 * the real agent (standalone) and pods created through meshd-cni:
 *   - pod traffic is not masqueraded: a pod's peer sees the pod's own address,
 *     and the agent adds no MASQUERADE/SNAT rule to the node;
 *   - kubelet probes that ambient SNATs to 169.254.7.127 (istio#52208; the
 *     rule below is ambient's, scoped to this test's pod) reach the pod under
 *     a policy that allows that address (examples/istio/allow-ambient-probes.yaml's
 *     rule), and are dropped by the datapath under one that does not.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { AMBIENT_PROBE_SOURCE } from '../../src/install/precheck.js';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { until } from '../helpers/kube-nodes.js';
import { tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';

const PORT = 8080;
const PODS = ['client', 'server', 'intruder']
  .map((n) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${n}\n  namespace: default\n  labels: {app: ${n}}\n`)
  .join('---\n');

/** The server's policy: the client on PORT, and (withProbes) the ambient probe address as the example allows it. */
function policy(withProbes: boolean): string {
  const example = parseAllDocuments(readFileSync(repoPath('examples', 'istio', 'allow-ambient-probes.yaml'), 'utf8'))[0]?.toJS() as unknown;
  const cidr = z.object({ spec: z.object({ ingress: z.array(z.object({ fromCIDR: z.array(z.string()) })) }) }).parse(example).spec.ingress[0]?.fromCIDR ?? [];
  assert.deepEqual(cidr, [`${AMBIENT_PROBE_SOURCE}/32`]);
  return `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: client}}]
      toPorts: [{ports: [{port: "${PORT}", protocol: TCP}]}]
${withProbes ? `    - fromCIDR: [${JSON.stringify(cidr[0])}]\n` : ''}`;
}

/** A server in `ns` that answers each connection with the peer address it sees. */
async function whoamiServer(t: TestContext, ns: string): Promise<void> {
  const script = `require('net').createServer((s) => s.end(s.remoteAddress)).listen(${PORT}, '0.0.0.0', () => console.log('ready'));`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  assert.equal(line, 'ready');
}

/** The peer address a pod's server saw, connecting from `ns` (or the host when undefined); 'timeout' when nothing answered. */
async function seenBy(ip: string, ns?: string, timeoutMs = 1500): Promise<string> {
  if (ns) {
    const script = `const s = require('net').connect(${PORT}, ${JSON.stringify(ip)}); let d=''; s.on('data', (x) => (d += x)); s.on('end', () => { console.log(d); process.exit(0); }); s.setTimeout(${timeoutMs}, () => { console.log('timeout'); process.exit(0); }); s.on('error', (e) => { console.log(e.code); process.exit(0); });`;
    return (await run('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { timeoutMs: timeoutMs + 10_000 })).stdout.trim();
  }
  return new Promise((resolve) => {
    const s = connect(PORT, ip);
    let d = '';
    s.setTimeout(timeoutMs, () => {
      s.destroy();
      resolve('timeout');
    });
    s.on('data', (x) => (d += String(x)));
    s.on('end', () => resolve(d));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

const natRules = async () => (await run('iptables-save', ['-t', 'nat'])).stdout.split('\n').filter((l) => l.startsWith('-A '));

test('ambient prerequisites: pod traffic keeps pod addresses, and probes SNATed to 169.254.7.127 reach a pod whose policy allows that address', async (t) => {
  requirePrivileges();
  const natBefore = await natRules();
  const node = new AgentNode({ 'cni.exclusive': false, 'socketLB.hostNamespaceOnly': true }, 12);
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true });
  node.write('pods.yaml', PODS);
  node.write('policy.yaml', policy(true));
  await node.start();
  const client = await node.addPod('client');
  const server = await node.addPod('server');
  const intruder = await node.addPod('intruder');
  await whoamiServer(t, server.ns);

  // No masquerade: the server sees the client pod's own address; the agent added no SNAT or MASQUERADE.
  await until('the client to reach the server', async () => ((await seenBy(server.ip, client.ns)) !== 'timeout') || undefined);
  assert.equal(await seenBy(server.ip, client.ns), client.ip);
  const added = (await natRules()).filter((l) => !natBefore.includes(l));
  assert.deepEqual(added.filter((l) => /MASQUERADE|SNAT/.test(l)), [], 'no masquerading rule appeared');
  // The policy is in force: another pod is dropped.
  assert.equal(await tryConnect(intruder.ns, server.ip, PORT, 800), 'timeout');

  // Ambient's probe SNAT (its rule matches the node's own sockets towards probed pods; here, this pod).
  const rule = ['-t', 'nat', '-I', 'POSTROUTING', '-m', 'owner', '--socket-exists', '-p', 'tcp', '-d', `${server.ip}/32`, '--dport', String(PORT), '-m', 'comment', '--comment', `meshd-test-${process.pid}`, '-j', 'SNAT', '--to-source', AMBIENT_PROBE_SOURCE];
  await run('iptables', ['-w', '5', ...rule]);
  t.after(() => run('iptables', ['-w', '5', ...rule.map((a) => (a === '-I' ? '-D' : a))]).then(() => undefined));

  assert.equal(await seenBy(server.ip), AMBIENT_PROBE_SOURCE, 'the probe reached the pod from 169.254.7.127');

  // Without the allow for 169.254.7.127 the same probe is dropped: the address is not the host's identity.
  node.write('policy.yaml', policy(false));
  await until('the probe to be denied', async () => ((await seenBy(server.ip, undefined, 800)) === 'timeout') || undefined);
  const since = process.hrtime.bigint();
  assert.equal(await seenBy(server.ip, undefined, 800), 'timeout');
  await until('the datapath\'s drop event for the probe', async () => (node.dropReasons(since, AMBIENT_PROBE_SOURCE, server.ip, PORT).length > 0) || undefined, 5_000);
  node.write('policy.yaml', policy(true));
  await until('the probe to be allowed again', async () => ((await seenBy(server.ip, undefined, 800)) === AMBIENT_PROBE_SOURCE) || undefined);
});
