import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../k8s/client.js';
import { isMeshdError } from '../util/errors.js';
import { carve, firstFree, formatCidr4, overlaps, parseCidr4, PodCidrAllocator, staticPodCidr, type Cidr4 } from './pod-cidr.js';

const c = (s: string): Cidr4 => {
  const v = parseCidr4(s);
  assert.ok(v, s);
  return v;
};

test('IPv4 CIDRs: parsed only when canonical, formatted back', () => {
  assert.deepEqual(parseCidr4('10.0.0.0/8'), { base: 10 * 2 ** 24, bits: 8 });
  assert.equal(formatCidr4(c('192.168.4.0/22')), '192.168.4.0/22');
  assert.equal(formatCidr4(c('0.0.0.0/0')), '0.0.0.0/0');
  assert.equal(formatCidr4(c('255.255.255.255/32')), '255.255.255.255/32');
  for (const bad of ['10.0.0.1/8', '10.0.0.0/33', '256.0.0.0/8', '10.0.0/8', '10.0.0.0', 'fd00::/64', ' 10.0.0.0/8']) assert.equal(parseCidr4(bad), undefined, bad);
});

test('overlap: containment both ways and neighbours that only touch', () => {
  assert.ok(overlaps(c('10.0.0.0/8'), c('10.3.4.0/24')));
  assert.ok(overlaps(c('10.3.4.0/24'), c('10.0.0.0/8')));
  assert.ok(overlaps(c('10.0.1.0/24'), c('10.0.1.0/24')));
  assert.ok(!overlaps(c('10.0.1.0/24'), c('10.0.2.0/24')));
  assert.ok(!overlaps(c('10.0.0.0/24'), c('10.0.1.0/24')));
  assert.ok(!overlaps(c('255.255.255.0/24'), c('10.0.0.0/8')));
});

test('carving a pool yields its blocks in order, none when the mask is wider than the pool', () => {
  assert.deepEqual([...carve(c('10.0.0.0/22'), 24)].map(formatCidr4), ['10.0.0.0/24', '10.0.1.0/24', '10.0.2.0/24', '10.0.3.0/24']);
  assert.equal([...carve(c('10.0.0.0/8'), 24)].length, 65536);
  assert.deepEqual([...carve(c('10.0.0.0/24'), 16)], []);
});

test('firstFree skips blocks held (or covered by a bigger CIDR) and goes on to the next pool; undefined when all are taken', () => {
  const pools = [c('10.0.0.0/23'), c('10.9.0.0/24')];
  assert.equal(formatCidr4(firstFree(pools, 24, []) ?? c('0.0.0.0/0')), '10.0.0.0/24');
  assert.equal(formatCidr4(firstFree(pools, 24, [c('10.0.0.0/24')]) ?? c('0.0.0.0/0')), '10.0.1.0/24');
  assert.equal(formatCidr4(firstFree(pools, 24, [c('10.0.0.0/23')]) ?? c('0.0.0.0/0')), '10.9.0.0/24', 'a /23 held covers both blocks');
  assert.equal(formatCidr4(firstFree(pools, 25, [c('10.0.0.0/24'), c('10.0.1.0/25')]) ?? c('0.0.0.0/0')), '10.0.1.128/25');
  assert.equal(firstFree(pools, 24, [c('10.0.0.0/16'), c('10.9.0.0/24')]), undefined);
});

test('standalone: the configured CIDR, ready, from config', () => {
  assert.deepEqual(staticPodCidr('10.244.0.0/24').current(), { mode: 'standalone', state: 'ready', cidr: '10.244.0.0/24', source: 'config', detail: 'ipam.podCIDR', code: null });
});

async function refusedClient(): Promise<KubeClient> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const addr = srv.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  await new Promise((r) => srv.close(r));
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }, { name: 'u' });
  return new KubeClient(kc);
}

test('a pool or explicit CIDR that is not canonical is refused with its code before any request', async () => {
  const client = await refusedClient();
  const base = { client, nodeName: 'n', mode: 'cluster-pool' as const, maskSize: 24, stateFile: '/nonexistent/x' };
  assert.throws(() => new PodCidrAllocator({ ...base, pool: ['10.0.0.1/8'] }), (e: unknown) => isMeshdError(e, 'MESHD_IPAM_POOL_INVALID'));
  assert.throws(() => new PodCidrAllocator({ ...base, pool: ['10.0.0.0/25'] }), (e: unknown) => isMeshdError(e, 'MESHD_IPAM_POOL_INVALID'), 'a /24 does not fit in a /25');
  assert.throws(() => new PodCidrAllocator({ ...base, pool: ['10.0.0.0/8'], explicit: '10.0.0.5/24' }), (e: unknown) => isMeshdError(e, 'MESHD_IPAM_POOL_INVALID'));
});

test('API server unreachable: the CIDR in local state is used (unconfirmed); without one the CIDR is pending with its code', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-podcidr-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const client = await refusedClient();
  const stateFile = join(dir, 'pod-cidr.json');
  const opts = { client, nodeName: 'node-a', mode: 'cluster-pool' as const, pool: ['10.0.0.0/8'], maskSize: 24, stateFile, retryMs: 60_000, startWaitMs: 300 };

  const none = new PodCidrAllocator(opts);
  t.after(() => none.stop());
  await none.start();
  assert.equal(none.current().state, 'pending');
  assert.equal(none.current().cidr, null);
  assert.equal(none.current().code, 'MESHD_IPAM_API_FAILED');

  writeFileSync(stateFile, JSON.stringify({ node: 'node-a', cidr: '10.0.7.0/24', source: 'cluster-pool' }));
  const local = new PodCidrAllocator(opts);
  t.after(() => local.stop());
  await local.start();
  assert.equal(local.current().state, 'ready');
  assert.equal(local.current().cidr, '10.0.7.0/24');
  assert.equal(local.current().source, 'cluster-pool');

  // An explicit CIDR needs no API server to be known; it wins over the local copy.
  const explicit = new PodCidrAllocator({ ...opts, explicit: '10.243.1.0/24' });
  t.after(() => explicit.stop());
  await explicit.start();
  assert.deepEqual([explicit.current().state, explicit.current().cidr, explicit.current().source], ['ready', '10.243.1.0/24', 'explicit']);

  // Another node's state file (a copied state directory) is not this node's CIDR.
  writeFileSync(stateFile, JSON.stringify({ node: 'node-b', cidr: '10.0.7.0/24', source: 'cluster-pool' }));
  const other = new PodCidrAllocator(opts);
  t.after(() => other.stop());
  await other.start();
  assert.equal(other.current().state, 'pending');
});
