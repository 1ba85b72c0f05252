/**
 * Socket-level service LB on the real kernel, end to end through the
 * ServiceManager: clients in a test cgroup, backends in a pod namespace.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ServiceManager, type LbLogEntry } from '../../src/datapath/lb/service-manager.js';
import { endpointSlice, type EndpointSlice } from '../../src/k8s/endpoint-slice.js';
import { mustParse } from '../../src/k8s/kind.js';
import { service, type Service } from '../../src/k8s/service.js';
import { LbWorld, type PeerResult } from '../helpers/lb-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

const svc = (name: string, clusterIP: string, ports: Array<{ name?: string; port: number; protocol?: 'TCP' | 'UDP' }>, extra: Record<string, unknown> = {}) =>
  mustParse(service, {
    metadata: { name, namespace: 'lbt' },
    spec: { clusterIP, ports, ...extra },
  });
const slice = (svcName: string, ip: string, ports: Array<{ name?: string; port: number; protocol?: 'TCP' | 'UDP' }>, name = `${svcName}-1`) =>
  mustParse(endpointSlice, {
    metadata: { name, namespace: 'lbt', labels: { 'kubernetes.io/service-name': svcName } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ip] }],
    ports,
  });
const replies = (rs: PeerResult[]) => rs.map((r) => ('reply' in r ? r.reply : `error:${r.error}`));

async function world(t: { after: (fn: () => Promise<void>) => void }, label: string) {
  requirePrivileges();
  const w = await LbWorld.create(label);
  t.after(() => w.cleanup());
  return w;
}

async function manager(w: LbWorld, opts: { hostNamespaceOnly?: boolean; logs?: LbLogEntry[] } = {}) {
  return ServiceManager.open({
    pinDir: w.pins.path,
    cgroupPath: w.cgroup.path,
    hostNamespaceOnly: opts.hostNamespaceOnly ?? false,
    logger: (e) => opts.logs?.push(e),
  });
}

test('host client: TCP connect to a VIP reaches a backend and getpeername() returns the VIP; UDP replies come from the VIP', async (t) => {
  const w = await world(t, 'sock');
  await w.serve('tcp', w.podIp, 8080, 'b1');
  await w.serve('udp', w.podIp, 5353, 'u1');
  const vip = `${w.vipNet}.10`;
  const mgr = await manager(w);
  t.after(() => {
    mgr.detach();
    mgr.close();
  });
  mgr.replaceAll(
    [svc('web', vip, [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }])],
    [slice('web', w.podIp, [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }])],
  );

  const tcp = await w.tcp(vip, 80, 3);
  assert.deepEqual(tcp, [1, 2, 3].map(() => ({ reply: 'b1', peer: `${vip}:80` })));
  const udp = await w.udp(vip, 53, 2);
  assert.deepEqual(udp, [1, 2].map(() => ({ reply: 'u1', from: `${vip}:53` })));

  // Closed TCP sockets took their reverse-translation entries with them (sock_release);
  // the unconnected UDP socket's entries (peer unknown at release) stay for the LRU to age out.
  const revnat = mgr.lb.maps.revnat.dump();
  assert.equal(revnat.length, 2, `reverse-translation entries left: ${revnat.length}`);
  const st = mgr.datapathStats();
  assert.ok(st.Xlated >= 5n, `translations counted: ${st.Xlated}`);
  assert.ok(st.Revnat >= 5n, `reverse translations counted: ${st.Revnat}`);
});

test('hostNamespaceOnly: a pod-namespace client keeps the VIP when true and is translated when false', async (t) => {
  const w = await world(t, 'hno');
  const vip = `${w.vipNet}.20`;
  await w.sb.exec(w.pod, 'ip', ['addr', 'add', `${vip}/32`, 'dev', 'lo']);
  await w.serve('tcp', vip, 80, 'vip-listener'); // proves the destination stayed the VIP
  await w.serve('tcp', w.podIp, 8080, 'backend');
  const objs = (): [Service[], EndpointSlice[]] => [[svc('hno', vip, [{ port: 80 }])], [slice('hno', w.podIp, [{ port: 8080 }])]];

  const onlyHost = await manager(w, { hostNamespaceOnly: true });
  try {
    onlyHost.replaceAll(...objs());
    assert.deepEqual(replies(await w.tcp(vip, 80, 2, w.pod)), ['vip-listener', 'vip-listener']);
    assert.deepEqual(replies(await w.tcp(vip, 80, 1)), ['backend'], 'the host namespace is still translated');
    assert.ok(onlyHost.datapathStats().SkippedNetns >= 2n);
  } finally {
    onlyHost.close();
  }
  // Same pins, setting flipped: the reloaded programs replace the attached ones in place.
  const everywhere = await manager(w, { hostNamespaceOnly: false });
  t.after(() => {
    everywhere.detach();
    everywhere.close();
  });
  assert.equal(everywhere.replaceAll(...objs()).writes, 0);
  assert.deepEqual(replies(await w.tcp(vip, 80, 2, w.pod)), ['backend', 'backend']);
});

test('backend removal: new connects stop going to it; zero backends refuse with ECONNREFUSED', async (t) => {
  const w = await world(t, 'rm');
  await w.serve('tcp', w.podIp, 8080, 'b1');
  await w.serve('tcp', w.podIp, 8081, 'b2');
  const vip = `${w.vipNet}.30`;
  const mgr = await manager(w);
  t.after(() => {
    mgr.detach();
    mgr.close();
  });
  const two = slice('rm', w.podIp, [{ port: 8080 }], 'rm-1');
  const other = slice('rm', w.podIp, [{ port: 8081 }], 'rm-2');
  mgr.replaceAll([svc('rm', vip, [{ port: 80 }])], [two, other]);
  const before = new Set(replies(await w.tcp(vip, 80, 40)));
  assert.deepEqual([...before].sort(), ['b1', 'b2'], 'random choice spreads over both backends');

  mgr.deleteEndpointSlice('lbt', 'rm-2');
  const r = mgr.sync();
  assert.ok(r.writes > 0 && r.writes <= 4, `removing one backend wrote ${r.writes} entries`);
  assert.deepEqual(new Set(replies(await w.tcp(vip, 80, 30))), new Set(['b1']));

  mgr.deleteEndpointSlice('lbt', 'rm-1');
  mgr.sync();
  assert.deepEqual(replies(await w.tcp(vip, 80, 2)), ['error:ECONNREFUSED', 'error:ECONNREFUSED']);
  assert.deepEqual(replies(await w.udp(vip, 80, 1)), ['error:ETIMEDOUT'], 'no UDP service on that port: untouched');
  assert.ok(mgr.datapathStats().Refused >= 2n);
});

test('agent restart: maps and attachments survive; the reconciler writes nothing when nothing changed', async (t) => {
  const w = await world(t, 'rst');
  await w.serve('tcp', w.podIp, 8080, 'b1');
  const vip = `${w.vipNet}.40`;
  const objs = (): [Service[], EndpointSlice[]] => [
    [svc('a', vip, [{ port: 80 }]), svc('b', `${w.vipNet}.41`, [{ port: 80 }], { sessionAffinity: 'ClientIP' }), svc('c', `${w.vipNet}.42`, [{ port: 80 }])],
    [slice('a', w.podIp, [{ port: 8080 }]), slice('b', w.podIp, [{ port: 8080 }])],
  ];
  const first = await manager(w);
  assert.equal(first.status().reusedPinnedState, false);
  const r1 = first.replaceAll(...objs());
  assert.ok(r1.writes >= 5, `first sync wrote ${r1.writes}`);
  first.close(); // the agent exits; pins keep maps and programs

  assert.deepEqual(replies(await w.tcp(vip, 80, 2)), ['b1', 'b1'], 'balancing continues with no agent running');

  const second = await manager(w);
  t.after(() => {
    second.detach();
    second.close();
  });
  assert.equal(second.status().reusedPinnedState, true);
  assert.equal(second.status().frontends, 3);
  const r2 = second.replaceAll(...objs());
  assert.equal(r2.writes, 0);
  assert.deepEqual(second.backendsOf(vip, 80), [`${w.podIp}:8080`]);
  assert.deepEqual(replies(await w.tcp(vip, 80, 2)), ['b1', 'b1']);

  // A service gone while the agent was down is removed by the first full sync.
  const [svcs, slices] = objs();
  const r3 = second.replaceAll(svcs.slice(0, 2), slices);
  assert.equal(r3.removed, 1);
  assert.equal(second.backendsOf(`${w.vipNet}.42`, 80), null);
});
