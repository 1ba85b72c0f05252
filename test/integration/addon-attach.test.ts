/**
 * Attaching through the addon on the real kernel: cgroup socket hooks as
 * pinnable links (still attached after every fd is closed, found again from
 * the pin, program swapped in place, detached), tcx links and clsact filters
 * on a veth, sk_msg on a sockhash, sock_ops on a cgroup.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { test } from 'node:test';
import { AttachType, BpfMap, attachTc, detachTc, isBpfError, native, openObject, u32 } from '../../native/index.js';
import { run } from '../../src/util/exec.js';
import { bpfObjectPath } from '../../src/util/paths.js';
import { tempCgroup, tempPinDir } from '../helpers/bpffs.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const KIT = bpfObjectPath('tests/addon_kit');

function listen(): Promise<Server & { port: number }> {
  return new Promise((resolve) => {
    const srv = createServer((s) => s.destroy());
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      resolve(Object.assign(srv, { port: typeof a === 'object' && a ? a.port : 0 }));
    });
  });
}

/** connect() once from a shell that first joins `cgroup` (bash's /dev/tcp). */
async function connectFrom(cgroup: string, port: number): Promise<void> {
  await run('bash', ['-c', `echo $$ > ${cgroup}/cgroup.procs && exec 3<>/dev/tcp/127.0.0.1/${port}`]);
}

const count = (m: BpfMap, key: number): bigint => m.lookup(u32(key))?.readBigUInt64LE() ?? 0n;

test('a cgroup connect4 link keeps working from its pin after every fd is closed; update swaps the program; detach stops it', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('att');
  const cg = tempCgroup('att');
  const srv = await listen();
  t.after(() => {
    srv.close();
    cg.cleanup();
    pins.cleanup();
  });
  const linkPin = `${pins.path}/connect4`;
  const obj = openObject(KIT, { pinRoot: pins.path });
  try {
    await obj.load();
    const link = native.attachCgroup(obj.programFd('kit_connect4'), cg.path, AttachType.CgroupInet4Connect);
    native.objPin(link, linkPin);
    native.closeFd(link);
  } finally {
    obj.close();
  }
  const hash = BpfMap.fromPin(`${pins.path}/kit_hash`);
  t.after(() => hash.close());

  await connectFrom(cg.path, srv.port);
  await connectFrom(cg.path, srv.port);
  assert.equal(count(hash, srv.port), 2n, 'the pinned link still runs the program');

  // A process outside the cgroup is not seen.
  await run('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${srv.port}`]);
  assert.equal(count(hash, srv.port), 2n);

  const again = native.objGet(linkPin);
  t.after(() => native.closeFd(again));
  const info = native.linkInfo(again);
  assert.equal(info.typeName, 'cgroup');
  assert.equal(info.attachType, AttachType.CgroupInet4Connect);
  assert.equal(typeof info.cgroupId, 'bigint');

  // Replace the program in place (a restarted agent with a new build does this).
  const obj2 = openObject(KIT, { pinRoot: pins.path });
  try {
    await obj2.load();
    native.linkUpdate(again, obj2.programFd('kit_connect4_alt'));
    assert.equal(native.linkInfo(again).progId, native.progInfo(obj2.programFd('kit_connect4_alt')).id);
  } finally {
    obj2.close();
  }
  await connectFrom(cg.path, srv.port);
  assert.equal(count(hash, srv.port), 2n);
  assert.equal(count(hash, 1), 1n, 'the replacement program ran');

  native.linkDetach(again);
  await connectFrom(cg.path, srv.port);
  assert.equal(count(hash, 1), 1n, 'nothing runs after detach');
  assert.equal(native.objUnpin(linkPin), true);
});

test('attaching to a missing cgroup or with a wrong attach type fails with errno', async (t) => {
  requirePrivileges();
  const obj = openObject(KIT);
  t.after(() => obj.close());
  await obj.load();
  const cg = tempCgroup('att');
  t.after(() => cg.cleanup());
  assert.throws(
    () => native.attachCgroup(obj.programFd('kit_connect4'), `${cg.path}-missing`, AttachType.CgroupInet4Connect),
    (e: unknown) => isBpfError(e) && e.code === 'ENOENT' && /open cgroup/.test(e.message),
  );
  assert.throws(
    () => native.attachCgroup(obj.programFd('kit_connect4'), cg.path, AttachType.CgroupUdp4Sendmsg),
    (e: unknown) => isBpfError(e) && e.code === 'EINVAL',
  );
  const sockops = native.attachCgroup(obj.programFd('kit_sockops'), cg.path, AttachType.CgroupSockOps);
  assert.equal(native.linkInfo(sockops).attachType, AttachType.CgroupSockOps);
  native.closeFd(sockops);
});

test('tc programs attach to a veth as a tcx link and as a clsact filter, and see its packets', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('att');
  const pins = tempPinDir('att');
  const obj = openObject(KIT, { pinRoot: pins.path });
  t.after(async () => {
    obj.close();
    pins.cleanup();
    await sb.cleanup();
  });
  await obj.load();
  const pod = await sb.netns('p');
  const hostIf = sb.name('h');
  await sb.vethToHost(pod, { hostIf, podIf: 'eth0', hostIp: '10.251.7.1/30', podIp: '10.251.7.2/30' });
  const ifindex = native.ifNameToIndex(hostIf);
  const hash = BpfMap.fromObject(obj, 'kit_hash');
  const send = () => sb.exec(pod, 'bash', ['-c', 'for i in 1 2 3; do echo x > /dev/udp/10.251.7.1/9; done']);

  const a = attachTc(obj.programFd('kit_tc'), ifindex, 'ingress');
  assert.equal(a.kind, 'tcx');
  if (a.kind === 'tcx') assert.equal(native.linkInfo(a.linkFd).type, 11 /* BPF_LINK_TYPE_TCX */);
  await send();
  const afterTcx = count(hash, 0);
  assert.ok(afterTcx >= 3n, `tcx program saw ${afterTcx} packets`);
  detachTc(a);
  await send();
  assert.equal(count(hash, 0), afterTcx, 'detached');

  const b = attachTc(obj.programFd('kit_tc'), ifindex, 'ingress', { preferTcx: false });
  assert.equal(b.kind, 'clsact');
  await send();
  const afterClsact = count(hash, 0);
  assert.ok(afterClsact >= afterTcx + 3n);
  detachTc(b);
  assert.equal(native.tcDetachLegacy(ifindex, 'ingress', { priority: 1, handle: 1 }), false);
  assert.equal(native.tcDestroyClsact(ifindex), true);
  await send();
  assert.equal(count(hash, 0), afterClsact);
});

test('sk_msg attaches to a sockhash both as a link and with prog_attach', async (t) => {
  requirePrivileges();
  const obj = openObject(KIT);
  t.after(() => obj.close());
  await obj.load();
  const prog = obj.programFd('kit_skmsg');
  const map = obj.mapFd('kit_sockhash');
  native.progAttach(prog, map, AttachType.SkMsgVerdict);
  native.progDetach(prog, map, AttachType.SkMsgVerdict);
  const link = native.linkCreate(prog, map, AttachType.SkMsgVerdict);
  assert.equal(native.linkInfo(link).type, 14 /* BPF_LINK_TYPE_SOCKMAP */);
  native.linkDetach(link);
  native.closeFd(link);
});
