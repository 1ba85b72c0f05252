/**
 * Socket LB features on the real kernel: ClientIP session affinity with its
 * timeout, Maglev, IPv6 (connect6/getpeername6/sendmsg6/recvmsg6), and the
 * number of map writes an incremental change costs.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { ServiceManager } from '../../src/datapath/lb/service-manager.js';
import { endpointSlice } from '../../src/k8s/endpoint-slice.js';
import { mustParse } from '../../src/k8s/kind.js';
import { service as serviceKind, type Service } from '../../src/k8s/service.js';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import { LbWorld, type PeerResult } from '../helpers/lb-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

const replies = (rs: PeerResult[]) => rs.map((r) => ('reply' in r ? r.reply : `error:${r.error}`));
const svc = (o: unknown): Service => mustParse(serviceKind, o);
const slice = (svc: string, name: string, ip: string, port: number, addressType = 'IPv4', protocol: 'TCP' | 'UDP' = 'TCP') =>
  mustParse(endpointSlice, {
    metadata: { name, namespace: 'ft', labels: { 'kubernetes.io/service-name': svc } },
    addressType,
    endpoints: [{ addresses: [ip] }],
    ports: [{ port, protocol }],
  });

async function setup(t: { after: (fn: () => Promise<void> | void) => void }, label: string) {
  requirePrivileges();
  const w = await LbWorld.create(label);
  t.after(() => w.cleanup());
  const mgr = await ServiceManager.open({ pinDir: w.pins.path, cgroupPath: w.cgroup.path, hostNamespaceOnly: false, logger: () => undefined });
  t.after(() => {
    mgr.detach();
    mgr.close();
  });
  return { w, mgr };
}

test('ClientIP affinity keeps a client on one backend until the timeout, and drops a backend that left', async (t) => {
  const { w, mgr } = await setup(t, 'aff');
  await w.serve('tcp', w.podIp, 8080, 'b1');
  await w.serve('tcp', w.podIp, 8081, 'b2');
  const vip = `${w.vipNet}.50`;
  const service = svc({ metadata: { name: 'aff', namespace: 'ft' }, spec: { clusterIP: vip, ports: [{ port: 80 }], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 1 } } } });
  mgr.replaceAll([service], [slice('aff', 'aff-1', w.podIp, 8080), slice('aff', 'aff-2', w.podIp, 8081)]);

  const first = replies(await w.tcp(vip, 80, 20));
  assert.equal(new Set(first).size, 1, `all connects on one backend: ${first.join(',')}`);
  const hits = mgr.datapathStats().Affinity;
  assert.ok(hits >= 19n, `affinity hits ${hits}`);

  await sleep(1300); // past the timeout: the next connect chooses afresh (no affinity hit)
  await w.tcp(vip, 80, 1);
  assert.equal(mgr.datapathStats().Affinity, hits);

  // The remembered backend leaves: affinity must not send clients to it.
  const now = replies(await w.tcp(vip, 80, 1))[0] ?? '';
  mgr.deleteEndpointSlice('ft', now === 'b1' ? 'aff-1' : 'aff-2');
  mgr.sync();
  const after = replies(await w.tcp(vip, 80, 5));
  assert.deepEqual(after, Array(5).fill(now === 'b1' ? 'b2' : 'b1'));
});

test('Maglev services spread sockets over backends from one table write per change', async (t) => {
  const { w, mgr } = await setup(t, 'mgl');
  await w.serve('tcp', w.podIp, 8080, 'b1');
  await w.serve('tcp', w.podIp, 8081, 'b2');
  const vip = `${w.vipNet}.60`;
  const service = svc({ metadata: { name: 'mgl', namespace: 'ft', annotations: { 'service.cilium.io/lb-algorithm': 'maglev' } }, spec: { clusterIP: vip, ports: [{ port: 80 }] } });
  mgr.replaceAll([service], [slice('mgl', 'mgl-1', w.podIp, 8080), slice('mgl', 'mgl-2', w.podIp, 8081)]);
  assert.equal(mgr.lb.maps.maglev.dump().length, 1);
  assert.deepEqual(new Set(replies(await w.tcp(vip, 80, 40))), new Set(['b1', 'b2']));

  const table = mgr.lb.maps.maglev.dump()[0]?.[1];
  mgr.deleteEndpointSlice('ft', 'mgl-2');
  const r = mgr.sync();
  // b2 held the last slot: the service entry's count, the slot, the table, the backend
  assert.equal(r.writes, 4);
  assert.notDeepEqual(mgr.lb.maps.maglev.dump()[0]?.[1], table);
  assert.deepEqual(new Set(replies(await w.tcp(vip, 80, 20))), new Set(['b1']));
});

test('IPv6: connect6 and sendmsg6 reach a v6 backend; getpeername6 and recvmsg6 show the VIP', async (t) => {
  const { w, mgr } = await setup(t, 'six');
  const sub = `fd00:${(process.pid % 0xffff).toString(16)}:${w.vipNet.split('.')[2] ?? '0'}`;
  await w.sb.exec(w.pod, 'ip', ['-6', 'addr', 'add', `${sub}::2/64`, 'dev', 'eth0', 'nodad']);
  await run('ip', ['-6', 'addr', 'add', `${sub}::1/64`, 'dev', w.sb.name('h'), 'nodad']);
  await w.serve('tcp', `${sub}::2`, 8080, 'v6b');
  await w.serve('udp', `${sub}::2`, 5353, 'v6u');
  const vip = `${sub.replace(/^fd00/, 'fd01')}::10`;
  const service = svc({ metadata: { name: 'six', namespace: 'ft' }, spec: { clusterIPs: [vip], ports: [{ name: 't', port: 80 }, { name: 'u', port: 53, protocol: 'UDP' }] } });
  const s = mustParse(endpointSlice, {
    metadata: { name: 'six-1', namespace: 'ft', labels: { 'kubernetes.io/service-name': 'six' } },
    addressType: 'IPv6',
    endpoints: [{ addresses: [`${sub}::2`] }],
    ports: [
      { name: 't', port: 8080 },
      { name: 'u', port: 5353, protocol: 'UDP' },
    ],
  });
  mgr.replaceAll([service], [s]);
  assert.deepEqual(await w.tcp(vip, 80, 2), [1, 2].map(() => ({ reply: 'v6b', peer: `${vip}:80` })));
  assert.deepEqual(await w.udp(vip, 53, 2), [1, 2].map(() => ({ reply: 'v6u', from: `${vip}:53` })));
});

test('incremental changes write only what changed; nothing changed writes nothing', async (t) => {
  const { w, mgr } = await setup(t, 'inc');
  const vip = `${w.vipNet}.70`;
  const service = (name: string, ip: string) => svc({ metadata: { name, namespace: 'ft' }, spec: { clusterIP: ip, ports: [{ port: 80 }] } });
  let r = mgr.replaceAll([service('a', vip)], [slice('a', 'a-1', '10.1.0.1', 8080), slice('a', 'a-2', '10.1.0.2', 8080)]);
  assert.equal(r.writes, 2 + 2 + 1); // two backends, two slots, one service entry
  assert.equal(mgr.sync().writes, 0);
  assert.equal(mgr.replaceAll([service('a', vip)], [slice('a', 'a-1', '10.1.0.1', 8080), slice('a', 'a-2', '10.1.0.2', 8080)]).writes, 0);

  mgr.upsertEndpointSlice(slice('a', 'a-3', '10.1.0.3', 8080));
  r = mgr.sync();
  assert.equal(r.writes, 3); // new backend, its slot, the service entry's count
  assert.deepEqual(mgr.backendsOf(vip, 80), ['10.1.0.1:8080', '10.1.0.2:8080', '10.1.0.3:8080']);

  mgr.deleteEndpointSlice('ft', 'a-1');
  r = mgr.sync();
  assert.equal(r.writes, 4); // slot 1 := last backend, count, delete slot 3, delete backend
  assert.deepEqual(mgr.backendsOf(vip, 80), ['10.1.0.3:8080', '10.1.0.2:8080']);

  mgr.upsertService(service('b', `${w.vipNet}.71`));
  mgr.upsertEndpointSlice(slice('b', 'b-1', '10.1.0.2', 8080)); // a backend 'a' already uses
  r = mgr.sync();
  assert.equal(r.writes, 2); // slot and service entry; the backend entry is shared
  assert.equal(r.added, 1);

  mgr.deleteService('ft', 'b');
  r = mgr.sync();
  assert.equal(r.writes, 2);
  assert.equal(r.removed, 1);
  assert.equal(mgr.status().backends, 2);
});

test('NodePort on a node IP and an external IP are balanced; `meshd lb list` shows what the maps hold', async (t) => {
  requirePrivileges();
  const w = await LbWorld.create('np');
  t.after(() => w.cleanup());
  const mgr = await ServiceManager.open({ pinDir: w.pins.path, cgroupPath: w.cgroup.path, hostNamespaceOnly: false, nodeIPs: [w.hostIp], logger: () => undefined });
  t.after(() => {
    mgr.detach();
    mgr.close();
  });
  await w.serve('tcp', w.podIp, 8080, 'np');
  const vip = `${w.vipNet}.80`;
  const ext = `${w.vipNet}.81`;
  mgr.replaceAll(
    [svc({ metadata: { name: 'np', namespace: 'ft' }, spec: { type: 'NodePort', clusterIP: vip, externalIPs: [ext], ports: [{ port: 80, nodePort: 30080 }] } })],
    [slice('np', 'np-1', w.podIp, 8080)],
  );
  assert.deepEqual(replies(await w.tcp(w.hostIp, 30080, 2)), ['np', 'np']);
  assert.deepEqual(replies(await w.tcp(ext, 80, 1)), ['np']);

  const { stdout } = await run(process.execPath, [repoPath('bin', 'meshd.mjs'), 'lb', 'list', '--pin-dir', w.pins.path, '-o', 'json']);
  const out: unknown = JSON.parse(stdout);
  assert.ok(typeof out === 'object' && out !== null && 'frontends' in out && Array.isArray(out.frontends));
  const rows = out.frontends.map((f: { vip: string; port: number; scope: number; backends: string[] }) => `${f.vip}:${f.port} s${f.scope} ${f.backends.join(',')}`).sort();
  assert.deepEqual(rows, [`${w.hostIp}:30080 s1 ${w.podIp}:8080`, `${vip}:80 s0 ${w.podIp}:8080`, `${ext}:80 s2 ${w.podIp}:8080`].sort());
  const text = await run(process.execPath, [repoPath('bin', 'meshd.mjs'), 'lb', 'list', '--pin-dir', w.pins.path]);
  assert.match(text.stdout, new RegExp(`${vip.replace(/\./g, '\\.')}:80/TCP \\(ClusterIP, random\\) -> ${w.podIp.replace(/\./g, '\\.')}:8080`));
});

test('connects racing with backend churn never fail: readers see no half-updated service', async (t) => {
  const { w, mgr } = await setup(t, 'race');
  await w.serve('tcp', w.podIp, 8080, 'b1');
  await w.serve('tcp', w.podIp, 8081, 'b2');
  await w.serve('tcp', w.podIp, 8082, 'b3');
  const vip = `${w.vipNet}.90`;
  mgr.replaceAll([svc({ metadata: { name: 'race', namespace: 'ft' }, spec: { clusterIP: vip, ports: [{ port: 80 }] } })], [slice('race', 'race-1', w.podIp, 8080)]);
  let done = false;
  const client = w.tcp(vip, 80, 400).finally(() => (done = true));
  let changes = 0;
  while (!done) {
    // b2 and b3 come and go in different orders, so slots are swap-removed and refilled all the time
    if (changes % 2 === 0) mgr.upsertEndpointSlice(slice('race', 'race-2', w.podIp, 8081));
    else mgr.deleteEndpointSlice('ft', 'race-2');
    if (changes % 3 === 0) mgr.upsertEndpointSlice(slice('race', 'race-3', w.podIp, 8082));
    else if (changes % 3 === 2) mgr.deleteEndpointSlice('ft', 'race-3');
    mgr.sync();
    changes += 1;
    await new Promise((r) => setImmediate(r));
  }
  const results = replies(await client);
  assert.ok(changes > 50, `only ${changes} changes happened during the connects`);
  assert.deepEqual(results.filter((r) => !['b1', 'b2', 'b3'].includes(r)), [], 'every connect reached a backend');
});
