/**
 * Conflicting or oversized input to the ServiceManager on real pinned maps:
 * refused or capped with one log line and a status counter each, and the
 * maps' existing entries untouched. (Programs are loaded but not attached:
 * only the maps matter.) Malformed objects never reach the manager: their
 * kind modules reject them (src/k8s/service.test.ts, endpoint-slice.test.ts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { BpfMap, u32 } from '../../native/index.js';
import { Backend, encodeAddr, LbMapName } from '../../src/datapath/lb/lb-maps.js';
import { ServiceManager, type LbLogEntry } from '../../src/datapath/lb/service-manager.js';
import { PinnedMapMismatchError } from '../../src/datapath/pinned-maps.js';
import { isMeshdError } from '../../src/util/errors.js';
import { endpointSlice, type EndpointSlice } from '../../src/k8s/endpoint-slice.js';
import { mustParse } from '../../src/k8s/kind.js';
import { service, type Service } from '../../src/k8s/service.js';
import { repoPath } from '../../src/util/paths.js';
import { pinnedMaps, tempPinDir } from '../helpers/bpffs.js';
import { requirePrivileges } from '../helpers/privileged.js';

const svc = (name: string, clusterIP: string, port = 80) => mustParse(service, { metadata: { name, namespace: 'in' }, spec: { clusterIP, ports: [{ port }] } });
const slice = (svcName: string, addrs: string[], name = `${svcName}-1`) =>
  mustParse(endpointSlice, {
    metadata: { name, namespace: 'in', labels: { 'kubernetes.io/service-name': svcName } },
    addressType: 'IPv4',
    endpoints: addrs.map((a) => ({ addresses: [a] })),
    ports: [{ port: 8080 }],
  });

async function open(t: { after: (fn: () => void) => void }, extra: { lbMapMax?: number; maxBackendsPerService?: number } = {}) {
  requirePrivileges();
  const pins = tempPinDir('lbin');
  const logs: LbLogEntry[] = [];
  const mgr = await ServiceManager.open({ pinDir: pins.path, attach: false, logger: (e) => logs.push(e), ...extra });
  t.after(() => {
    mgr.close();
    pins.cleanup();
  });
  const snapshot = () => {
    const m = mgr.lb.maps;
    return [m.svc, m.backends, m.maglev, m.affmatch].map((x) => x.dump().map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort());
  };
  return { mgr, logs, snapshot };
}

test('a duplicate VIP:port stays with the service that holds it, and moves when that service goes', async (t) => {
  const { mgr, logs, snapshot } = await open(t);
  mgr.replaceAll([svc('a', '10.96.1.1')], [slice('a', ['10.0.0.1'])]);
  const before = snapshot();
  mgr.upsertService(svc('b', '10.96.1.1'));
  mgr.upsertEndpointSlice(slice('b', ['10.0.0.2']));
  const r = mgr.sync();
  assert.equal(r.rejected, 1);
  assert.equal(r.writes, 0);
  assert.deepEqual(snapshot(), before);
  assert.deepEqual(mgr.backendsOf('10.96.1.1', 80), ['10.0.0.1:8080']);
  assert.equal(mgr.status().duplicateFrontends, 1);
  assert.deepEqual([logs[0]?.code, logs[0]?.object], ['MESHD_LB_DUPLICATE_FRONTEND', 'in/b']);
  assert.match(logs[0]?.msg ?? '', /10\.96\.1\.1:80\/TCP is already served by service in\/a/);

  mgr.deleteService('in', 'a');
  mgr.sync();
  assert.deepEqual(mgr.backendsOf('10.96.1.1', 80), ['10.0.0.2:8080']);
});

test('more backends than allowed per service are capped, with a log line and a counter', async (t) => {
  const { mgr, logs } = await open(t, { maxBackendsPerService: 4 });
  mgr.replaceAll([svc('a', '10.96.1.1')], [slice('a', ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6'])]);
  assert.equal(mgr.backendsOf('10.96.1.1', 80)?.length, 4);
  assert.equal(mgr.status().cappedFrontends, 1);
  assert.equal(logs[0]?.code, 'MESHD_LB_BACKENDS_CAPPED');
  assert.match(logs[0]?.msg ?? '', /6 backends, capped to 4/);
});

test('services that would overflow the service map are refused; the ones programmed are untouched', async (t) => {
  const { mgr, logs, snapshot } = await open(t, { lbMapMax: 8 });
  assert.equal(mgr.lb.maps.svc.info.maxEntries, 8);
  // each service: one service entry + one backend slot = 2 entries
  mgr.replaceAll(
    [1, 2, 3, 4].map((i) => svc(`s${i}`, `10.96.1.${i}`)),
    [1, 2, 3, 4].map((i) => slice(`s${i}`, [`10.0.0.${i}`])),
  );
  assert.equal(mgr.status().frontends, 4);
  const before = snapshot();
  mgr.upsertService(svc('s5', '10.96.1.5'));
  mgr.upsertEndpointSlice(slice('s5', ['10.0.0.5']));
  const r = mgr.sync();
  assert.equal(r.rejected, 1);
  assert.equal(r.writes, 0);
  assert.deepEqual(snapshot(), before);
  assert.equal(mgr.backendsOf('10.96.1.5', 80), null);
  assert.equal(mgr.status().capacityRejected, 1);
  assert.deepEqual([logs[0]?.code, logs[0]?.object], ['MESHD_LB_CAPACITY', 'in/s5']);
  assert.match(logs[0]?.msg ?? '', /10\.96\.1\.5:80\/TCP: service map \(8 entries\)/);
});

test('leftovers of an agent killed mid-write (unreferenced backends, tables) are swept by the next start', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('lbin');
  t.after(() => pins.cleanup());
  const objs = (): [Service[], EndpointSlice[]] => [[svc('a', '10.96.1.1')], [slice('a', ['10.0.0.1'])]];
  const first = await ServiceManager.open({ pinDir: pins.path, attach: false, logger: () => undefined });
  first.replaceAll(...objs());
  first.close();

  const be = BpfMap.fromPin(`${pins.path}/${LbMapName.backends}`);
  const mg = BpfMap.fromPin(`${pins.path}/${LbMapName.maglev}`);
  try {
    be.update(u32(999), Backend.encode({ addr: encodeAddr('10.9.9.9'), port: 1, proto: 6, pad: 0 }));
    mg.update(u32(777), Buffer.alloc(mg.valueSize));
  } finally {
    be.close();
    mg.close();
  }

  const second = await ServiceManager.open({ pinDir: pins.path, attach: false, logger: () => undefined });
  t.after(() => second.close());
  assert.equal(second.replaceAll(...objs()).writes, 2);
  assert.deepEqual(second.lb.maps.backends.dump().map(([k]) => k.readUInt32LE(0)), [1]);
  assert.equal(second.lb.maps.maglev.dump().length, 0);
  assert.equal(second.replaceAll(...objs()).writes, 0);
});

test('reopening pins made with another bpf.lbMapMax fails with a coded error naming the map and field, and changes nothing', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('lbin');
  t.after(() => pins.cleanup());
  const first = await ServiceManager.open({ pinDir: pins.path, attach: false, lbMapMax: 1024, logger: () => undefined });
  first.replaceAll([svc('kept', '10.96.0.50')], [slice('kept', ['10.0.0.5'])]);
  const before = pinnedMaps(pins.path, 'meshd_lb_');
  first.close();
  await assert.rejects(ServiceManager.open({ pinDir: pins.path, attach: false, logger: () => undefined }), (e: unknown) => {
    assert.ok(isMeshdError(e, 'MESHD_LB_PINNED_MAP_MISMATCH') && e instanceof PinnedMapMismatchError, String(e));
    assert.equal(e.kind, 'conflict');
    assert.deepEqual(
      { map: e.mismatch.map, field: e.mismatch.field, pinned: e.mismatch.pinned, expected: e.mismatch.expected },
      { map: LbMapName.svc, field: 'maxEntries', pinned: 1024, expected: 65536 },
    );
    return true;
  });
  // The same pins (same kernel map ids), with their content, and no map created beside them.
  assert.deepEqual(pinnedMaps(pins.path, 'meshd_lb_'), before);
  const again = await ServiceManager.open({ pinDir: pins.path, attach: false, lbMapMax: 1024, logger: () => undefined });
  t.after(() => again.close());
  assert.equal(again.lb.reused, true);
  assert.equal(again.replaceAll([svc('kept', '10.96.0.50')], [slice('kept', ['10.0.0.5'])]).writes, 0);
});

test('meshd lb list: a missing pin directory is a clear error (exit 1); bad arguments exit 2', async () => {
  requirePrivileges();
  const bin = repoPath('bin', 'meshd.mjs');
  const missing = spawnSync(process.execPath, [bin, 'lb', 'list', '--pin-dir', '/sys/fs/bpf/meshd-test-none'], { encoding: 'utf8' });
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read the socket-LB maps under \/sys\/fs\/bpf\/meshd-test-none: .*ENOENT|No such file/);
  const bad = spawnSync(process.execPath, [bin, 'lb', 'frobnicate'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /usage: meshd lb list/);
  const badOut = spawnSync(process.execPath, [bin, 'lb', 'list', '-o', 'xml'], { encoding: 'utf8' });
  assert.equal(badOut.status, 2);
  assert.match(badOut.stderr, /output/);
});
