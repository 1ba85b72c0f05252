/**
 * socketLB.hostNamespaceOnly=true: the socket LB leaves a pod's socket alone,
 * so the pod's packets to a ClusterIP are translated per packet by the
 * endpoint program (DNAT out, reverse SNAT of the replies), and policy judges
 * the backend; a connection the policy sends to the proxy keeps the VIP.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { native } from '../../native/index.js';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import { NatKey, NatValue } from '../../src/datapath/maps.js';
import { ServiceManager } from '../../src/datapath/lb/service-manager.js';
import { endpointSlice } from '../../src/k8s/endpoint-slice.js';
import { mustParse } from '../../src/k8s/kind.js';
import { service } from '../../src/k8s/service.js';
import { CommandError, run } from '../../src/util/exec.js';
import { tempCgroup, tempPinDir } from '../helpers/bpffs.js';
import { PEER, startPeer } from '../helpers/datapath-peer.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const ID_A = 2001;
const ID_B = 2002;

test('with hostNamespaceOnly a pod reaches a ClusterIP through the per-packet path, unless the connection is headed to the proxy', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('dpsv');
  t.after(() => sb.cleanup());
  const pins = tempPinDir('dpsv');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const cg = tempCgroup('dpsv');
  t.after(() => cg.cleanup());

  const k = 100 + ((process.pid >> 3) % 150);
  const net = (n: number) => `10.${k}.79.${n}`;
  const vip = `10.${k}.96.10`;
  const nsA = await sb.netns('a');
  const nsB = await sb.netns('b');
  const hA = sb.name('ha');
  const hB = sb.name('hb');
  await sb.vethToHost(nsA, { hostIf: hA, podIf: 'eth0', hostIp: `${net(1)}/30`, podIp: `${net(2)}/30`, defaultRoute: true });
  await sb.vethToHost(nsB, { hostIf: hB, podIf: 'eth0', hostIp: `${net(5)}/30`, podIp: `${net(6)}/30`, defaultRoute: true });
  for (const i of [hA, hB]) await run('sysctl', ['-qw', `net.ipv4.conf.${i}.forwarding=1`]);
  // An untranslated VIP packet must die here, not wander off the host.
  await run('ip', ['route', 'add', 'blackhole', `${vip}/32`]);
  sb.defer(() => run('ip', ['route', 'del', 'blackhole', `${vip}/32`]));
  await startPeer(sb, nsB, ['serve', 'B', '8080']);

  const lb = await ServiceManager.open({ pinDir: pins.path, cgroupPath: cg.path, hostNamespaceOnly: true, logger: () => undefined });
  t.after(() => {
    lb.detach();
    lb.close();
  });
  lb.replaceAll(
    [mustParse(service, { metadata: { name: 'web', namespace: 'dpsv' }, spec: { clusterIP: vip, ports: [{ name: 'http', port: 80 }] } })],
    [
      mustParse(endpointSlice, {
        metadata: { name: 'web-1', namespace: 'dpsv', labels: { 'kubernetes.io/service-name': 'web' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: [net(6)] }],
        ports: [{ name: 'http', port: 8080 }],
      }),
    ],
  );
  const proxyPort = 20000 + (process.pid % 10000);
  const dp = await EndpointManager.open({ pinDir: pins.path, proxyPort: () => proxyPort });
  t.after(() => dp.close());
  await dp.addEndpoint({ endpointId: 'dpsv/a', ifname: hA, identity: ID_A });
  await dp.addEndpoint({ endpointId: 'dpsv/b', ifname: hB, identity: ID_B });
  dp.syncIpcache([
    { prefix: `${net(2)}/32`, identity: ID_A },
    { prefix: `${net(6)}/32`, identity: ID_B },
  ]);
  // A may only talk to B on 8080: the translated flow is judged on the backend.
  dp.updatePolicy({
    endpointId: 'dpsv/a',
    identity: ID_A,
    ingress: { defaultDeny: false, entries: [] },
    egress: { defaultDeny: true, entries: [{ remoteIdentity: ID_B, protocol: 6, port: 8080, endPort: 8080, verdict: 'ALLOW', derivedFrom: ['t'] }] },
    revision: 1,
  });

  // The client runs in the pod's namespace and in the socket LB's cgroup.
  const fromPod = async (): Promise<string> => {
    try {
      const r = await run('sh', ['-c', `echo $$ > ${cg.path}/cgroup.procs && exec ip netns exec ${nsA} python3 ${PEER} connect ${vip} 80 1.5`], { timeoutMs: 15_000 });
      return r.stdout.trim();
    } catch (e) {
      if (e instanceof CommandError && e.exitCode === 2) return 'TIMEOUT';
      throw e;
    }
  };

  assert.equal(await fromPod(), 'TIMEOUT', 'per-packet translation off: the pod socket keeps the VIP and nothing answers');
  const skipped = lb.datapathStats().SkippedNetns;
  assert.ok(skipped > 0n, 'the socket LB left the pod socket alone (hostNamespaceOnly)');

  dp.setConfig({ perPacketLb: true });
  assert.equal(await fromPod(), `B 8080 ${net(2)}`, 'translated to the backend, replies translated back (the handshake completed)');
  const nat = native.mapDump(dp.mapFds().nat).map(([key]) => NatKey.decode(key));
  const vipBytes = Buffer.from(vip.split('.').map(Number));
  assert.ok(
    nat.some((n) => n.dir === 0 && n.daddr.subarray(0, 4).equals(vipBytes) && n.dport === 80),
    'a forward entry for pod -> VIP:80',
  );
  assert.ok(nat.some((n) => n.dir === 1 && n.sport === 8080), 'a reverse entry for backend:8080 -> pod');
  assert.equal(lb.datapathStats().Xlated, 0n, 'the socket LB translated nothing: the per-packet path did');

  // Headed to the proxy: the backend's port carries L7 rules, so the connection keeps the VIP
  // and the proxy sees the service as the original destination.
  const table = String(30000 + (process.pid % 20000));
  const prio = String(9000 + (process.pid % 1000));
  await run('ip', ['rule', 'add', 'fwmark', '0xb00/0xf00', 'lookup', table, 'priority', prio]);
  sb.defer(() => run('ip', ['rule', 'del', 'fwmark', '0xb00/0xf00', 'lookup', table, 'priority', prio]));
  await run('ip', ['route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', table]);
  sb.defer(() => run('ip', ['route', 'flush', 'table', table]));
  const proxy = await startPeer(sb, null, ['tproxy', String(proxyPort)]);
  dp.updatePolicy({
    endpointId: 'dpsv/a',
    identity: ID_A,
    ingress: { defaultDeny: false, entries: [] },
    egress: {
      defaultDeny: true,
      entries: [{ remoteIdentity: ID_B, protocol: 6, port: 8080, endPort: 8080, verdict: 'REDIRECT', l7: { kind: 'http', rules: [{ path: '/' }] }, derivedFrom: ['t'] }],
    },
    revision: 2,
  });
  assert.equal(await fromPod(), `proxy ${vip}:80`);
  await proxy.waitFor(new RegExp(`^accept ${net(2).replaceAll('.', '\\.')}:\\d+ ${vip.replaceAll('.', '\\.')}:80$`));
  const kept = native
    .mapDump(dp.mapFds().nat)
    .map(([key, value]) => ({ key: NatKey.decode(key), value: NatValue.decode(value) }))
    .filter((n) => n.key.dir === 0 && n.value.addr.subarray(0, 4).equals(vipBytes));
  assert.equal(kept.length, 1, 'a forward entry that keeps the VIP');
  await proxy.kill();

  // Policy sees the backend: take the allow away and the ClusterIP is unreachable.
  dp.updatePolicy({
    endpointId: 'dpsv/a',
    identity: ID_A,
    ingress: { defaultDeny: false, entries: [] },
    egress: { defaultDeny: true, entries: [] },
    revision: 3,
  });
  assert.equal(await fromPod(), 'TIMEOUT');
});
