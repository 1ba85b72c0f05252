import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { repoPath } from '../../src/util/paths.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('meshd doctor passes every required check on this machine and leaves no namespace behind', () => {
  requirePrivileges();
  // Only the doctor's own scratch namespaces count: other tests may run at the same time.
  const doctorNs = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith('meshd-doctor-'));
  const out = execFileSync(process.execPath, [repoPath('bin', 'meshd.mjs'), 'doctor', '-o', 'json'], { encoding: 'utf8' });
  const parsed = JSON.parse(out) as { checks: Array<{ name: string; ok: boolean; required: boolean; detail: string }> };
  const names = parsed.checks.map((c) => c.name);
  for (const n of ['privileges', 'kernel', 'btf', 'bpf-program', 'cgroup-v2', 'bpffs', 'tc-clsact', 'policy-routing', 'envoy']) {
    assert.ok(names.includes(n), `doctor has a ${n} check`);
  }
  const failed = parsed.checks.filter((c) => c.required && !c.ok);
  assert.deepEqual(failed, []);
  const envoy = parsed.checks.find((c) => c.name === 'envoy');
  assert.match(envoy?.detail ?? '', /Envoy 1\.40\./);
  assert.deepEqual(doctorNs(), []);
});
