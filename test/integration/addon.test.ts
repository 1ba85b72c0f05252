/**
 * The chain C -> object -> addon -> TypeScript on the running kernel.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isBpfError, native, openObject } from '../../native/index.js';
import { MESHD_PROBE_MAGIC, ProbeStats, runProbe, syntheticFrame } from '../../src/datapath/probe.js';
import { bpfObjectPath, repoPath } from '../../src/util/paths.js';
import { btfStructs, layoutDiff } from '../helpers/btf.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('libbpf version is reported', () => {
  assert.match(native.libbpfVersion(), /^v?\d+\.\d+/);
});

test('probe runs in the kernel via BPF_PROG_TEST_RUN and its map value is read from TypeScript', async () => {
  requirePrivileges();
  const r = await runProbe(5, 100);
  assert.equal(r.retval, 0);
  assert.equal(r.runs, 5n);
  assert.equal(r.lastLen, 100);
  assert.equal(r.magic, MESHD_PROBE_MAGIC);
});

test('an object lists its programs and maps, with fds only once loaded; close is idempotent', async () => {
  requirePrivileges();
  const obj = openObject(bpfObjectPath('probe'));
  try {
    assert.equal(obj.isLoaded(), false);
    assert.deepEqual(
      obj.programs().map((p) => [p.name, p.typeName, p.fd]),
      [['meshd_probe', 'sched_cls', -1]],
    );
    await obj.load();
    const [prog] = obj.programs();
    const [map] = obj.maps();
    assert.ok(prog && prog.fd > 0);
    assert.ok(map && map.fd > 0);
    assert.deepEqual([map.name, map.typeName, map.keySize, map.valueSize, map.maxEntries], ['meshd_probe_stats', 'array', 4, ProbeStats.size, 1]);
    const run = native.progTestRun(prog.fd, syntheticFrame());
    assert.equal(run.retval, 0);
  } finally {
    obj.close();
    obj.close();
  }
  assert.throws(() => obj.programs(), (e: unknown) => isBpfError(e) && e.code === 'EBADF');
});

test('errors carry errno, code and libbpf message', () => {
  assert.throws(
    () => openObject(repoPath('bpf', 'build', 'no-such-object.o')),
    (e: unknown) => isBpfError(e) && e.errno === 2 && e.code === 'ENOENT' && /failed to open/.test(e.libbpfLog),
  );
});

test('a verifier rejection surfaces the verifier log in the exception', async () => {
  requirePrivileges();
  const obj = openObject(bpfObjectPath('tests/verifier_reject'));
  try {
    await assert.rejects(obj.load(), (e: unknown) => {
      assert.ok(isBpfError(e));
      assert.equal(e.code, 'EACCES');
      assert.match(e.libbpfLog, /invalid access to packet/);
      return true;
    });
  } finally {
    obj.close();
  }
});

test('loading a large object does not block the event loop', async () => {
  requirePrivileges();
  const obj = openObject(bpfObjectPath('probe_heavy'));
  let last = performance.now();
  let maxGap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks += 1;
  }, 2);
  const t0 = performance.now();
  try {
    await obj.load();
  } finally {
    clearInterval(timer);
    obj.close();
  }
  const loadMs = performance.now() - t0;
  assert.ok(loadMs > 30, `the heavy object should take the verifier a while (took ${loadMs.toFixed(1)} ms)`);
  assert.ok(ticks >= 5, `timers must keep firing during the load (fired ${ticks} times in ${loadMs.toFixed(1)} ms)`);
  assert.ok(maxGap < 25, `event loop stalled for ${maxGap.toFixed(1)} ms during a ${loadMs.toFixed(1)} ms load`);
});

test('ProbeStats codec matches struct meshd_probe_stats in the object BTF', async () => {
  const structs = await btfStructs(bpfObjectPath('probe'));
  assert.deepEqual(layoutDiff(ProbeStats, structs.get(ProbeStats.cName)), []);
});
