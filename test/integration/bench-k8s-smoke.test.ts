/**
 * `npm run bench:k8s` in a short form (small sizes), so the suite keeps the
 * benchmark runnable: a real kube-apiserver, two agents, policy changes that
 * must reach both agents' pinned policy maps, a populated cluster, and the
 * one JSON line the benchmark promises.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { requirePrivileges } from '../helpers/privileged.js';

const PODS = 60;
const CHANGES = 3;

const Percentiles = z.object({ p50_ms: z.number().positive(), p99_ms: z.number().positive(), max_ms: z.number().positive() });
const Apply = z.object({
  p50_ms: z.number().positive(),
  p99_ms: z.number().positive(),
  changes: z.number().int(),
  kubectl_p50_ms: z.number().positive(),
  write_p50_ms: z.number().nonnegative(),
  write_p99_ms: z.number().nonnegative(),
  write_samples: z.number().int(),
  per_agent: z.record(z.string(), Percentiles),
});
const AgentFigures = z.object({
  heap_mb: z.number().positive(),
  rss_mb: z.number().positive(),
  api_rps: z.number().nonnegative(),
  api_rps_audit: z.number().nonnegative(),
  requests_by_verb: z.record(z.string(), z.number().int().nonnegative()),
});
const Result = z.object({
  apply_to_enforced: Apply,
  scale: z.object({
    pods: z.number().int(),
    nodes: z.number().int(),
    policies: z.number().int(),
    endpoints: z.number().int(),
    identities: z.number().int(),
    populate_s: z.number().positive(),
    catch_up_s: z.number().positive(),
    ready_s: z.number().positive(),
    heap_mb: z.number().positive(),
    rss_mb: z.number().positive(),
    api_rps: z.number().nonnegative(),
    api_rps_audit: z.number().nonnegative(),
    window_s: z.number().positive(),
    apply_p50_ms: z.number().positive(),
    apply_p99_ms: z.number().positive(),
    write_p99_ms: z.number().nonnegative(),
    apply: Apply,
    per_agent: z.record(z.string(), AgentFigures),
  }),
});

test('bench:k8s --quick: policy changes reach both agents pins, the cluster is populated, one JSON line', async () => {
  requirePrivileges();
  const script = fileURLToPath(new URL('../../bench/k8s.js', import.meta.url));
  const args = ['--json', '--quick', '--pods', String(PODS), '--nodes', '6', '--policies', '10', '--changes', String(CHANGES), '--window', '3'];
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, `bench exited ${code}; its log ends:\n${stderr.split('\n').slice(-30).join('\n')}`);

  const last = stdout.trimEnd().split('\n').at(-1) ?? '';
  const r = Result.parse(JSON.parse(last));
  const nodes = ['bench-node-000', 'bench-node-001'];
  for (const apply of [r.apply_to_enforced, r.scale.apply]) {
    // Every change was seen in each agent's pinned policy map (the bench fails otherwise), and timed.
    assert.deepEqual(Object.keys(apply.per_agent).sort(), nodes);
    assert.equal(apply.changes, CHANGES);
    assert.ok(apply.p99_ms >= apply.p50_ms);
    // The API server's record of each write was found: one figure per change and agent.
    assert.equal(apply.write_samples, CHANGES * nodes.length);
    assert.ok(apply.write_p50_ms <= apply.p50_ms, 'the write comes after kubectl started');
  }
  assert.equal(r.scale.pods, PODS);
  // One endpoint object per pod of the object-only nodes (all but the two servers and the client).
  assert.ok(r.scale.endpoints >= PODS - 3, `endpoints: ${r.scale.endpoints}`);
  assert.equal(r.scale.policies, 11);
  assert.deepEqual(Object.keys(r.scale.per_agent).sort(), nodes);
  assert.ok(r.scale.heap_mb < 300, `heap ${r.scale.heap_mb} MB`);
});
