import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mustParse } from '../k8s/kind.js';
import { ciliumLbIpPool } from '../k8s/cilium-lb-ip-pool.js';
import { allocate, poolInput, type PoolInput } from './allocator.js';
import { blockRange, rangeSize } from './ip-range.js';
import { lbRequest, LbServiceSchema, type LbRequest } from './lb-service.js';

let clock = 0;
function pool(name: string, spec: Record<string, unknown>): PoolInput {
  clock += 1;
  return poolInput(mustParse(ciliumLbIpPool, { apiVersion: 'cilium.io/v2', kind: 'CiliumLoadBalancerIPPool', metadata: { name, creationTimestamp: `2026-01-01T00:00:${String(clock).padStart(2, '0')}Z` }, spec }));
}

function svc(name: string, o: { ns?: string; labels?: Record<string, string>; annotations?: Record<string, string>; spec?: Record<string, unknown>; ips?: string[]; ports?: number[] } = {}): LbRequest {
  clock += 1;
  return lbRequest(
    LbServiceSchema.parse({
      metadata: { name, namespace: o.ns ?? 'default', labels: o.labels ?? {}, annotations: o.annotations ?? {}, creationTimestamp: `2026-01-01T00:01:${String(clock).padStart(2, '0')}Z` },
      spec: { type: 'LoadBalancer', ports: (o.ports ?? [80]).map((port) => ({ port })), ...o.spec },
      status: { loadBalancer: { ingress: (o.ips ?? []).map((ip) => ({ ip })) } },
    }),
  );
}

const ips = (r: ReturnType<typeof allocate>, key: string) => r.services.get(key)?.ingress;
const reason = (r: ReturnType<typeof allocate>, key: string) => r.services.get(key)?.reason;

test('ranges: CIDRs whole by default, first and last reserved with allowFirstLastIPs No, /31 and /32 always whole', () => {
  const r24 = blockRange({ cidr: '10.0.10.0/24' }, { allowFirstLast: true });
  assert.ok(typeof r24 !== 'string' && rangeSize(r24) === 256n);
  const trimmed = blockRange({ cidr: '10.0.10.0/24' }, { allowFirstLast: false });
  assert.ok(typeof trimmed !== 'string' && rangeSize(trimmed) === 254n);
  for (const [cidr, size] of [['10.0.0.4/31', 2n], ['10.0.0.4/32', 1n], ['2001:db8::/127', 2n], ['2001:db8::1/128', 1n]] as const) {
    const r = blockRange({ cidr }, { allowFirstLast: false });
    assert.ok(typeof r !== 'string' && rangeSize(r) === size, cidr);
  }
  const range = blockRange({ start: '20.0.20.100', stop: '20.0.20.200' }, { allowFirstLast: false });
  assert.ok(typeof range !== 'string' && rangeSize(range) === 101n, 'start/stop ranges are never trimmed');
  assert.equal(blockRange({ start: '20.0.20.2', stop: '20.0.20.1' }, { allowFirstLast: true }), 'START_AFTER_STOP');
  assert.equal(blockRange({ start: '20.0.20.2', stop: '2001:db8::1' }, { allowFirstLast: true }), 'MIXED_FAMILIES');
});

test('a Service gets the lowest free address of the oldest matching pool; the pool counts it', () => {
  const p = pool('p', { blocks: [{ cidr: '10.0.10.0/30' }], allowFirstLastIPs: 'No' });
  const a = svc('a');
  const b = svc('b');
  const r = allocate([p], [a, b]);
  assert.deepEqual(ips(r, 'default/a'), ['10.0.10.1']);
  assert.deepEqual(ips(r, 'default/b'), ['10.0.10.2']);
  assert.deepEqual(r.pools.get('p'), { total: 2n, used: 2, conflict: undefined });
});

test('exhaustion: the newest Service waits with out_of_ips and gets the address freed by another', () => {
  const p = pool('p', { blocks: [{ cidr: '10.0.10.7/32' }] });
  const a = svc('a');
  const b = svc('b');
  const r = allocate([p], [a, b]);
  assert.deepEqual(ips(r, 'default/a'), ['10.0.10.7']);
  assert.deepEqual(ips(r, 'default/b'), []);
  assert.equal(reason(r, 'default/b'), 'out_of_ips');
  assert.equal(r.services.get('default/b')?.satisfied, false);
  const after = allocate([p], [b]);
  assert.deepEqual(ips(after, 'default/b'), ['10.0.10.7']);
});

test('selectors: labels and the service name/namespace keys pick the pool; no match is no_pool', () => {
  const blue = pool('blue', { blocks: [{ cidr: '10.0.1.0/24' }], serviceSelector: { matchLabels: { color: 'blue' } } });
  const tenant = pool('tenant', { blocks: [{ start: '10.0.2.10', stop: '10.0.2.20' }], serviceSelector: { matchExpressions: [{ key: 'io.kubernetes.service.namespace', operator: 'In', values: ['tenant-a'] }] } });
  const r = allocate([blue, tenant], [svc('b', { labels: { color: 'blue' } }), svc('t', { ns: 'tenant-a' }), svc('x')]);
  assert.deepEqual(ips(r, 'default/b'), ['10.0.1.0']);
  assert.deepEqual(ips(r, 'tenant-a/t'), ['10.0.2.10']);
  assert.deepEqual(ips(r, 'default/x'), []);
  assert.equal(reason(r, 'default/x'), 'no_pool');
});

test('an overlapping pool created later is conflicting and allocates nothing; deleting the older one resolves it', () => {
  const older = pool('older', { blocks: [{ cidr: '10.0.3.0/24' }], serviceSelector: { matchLabels: { pool: 'older' } } });
  const later = pool('later', { blocks: [{ start: '10.0.3.200', stop: '10.0.4.10' }] });
  const s = svc('s');
  const r = allocate([later, older], [s]);
  assert.equal(r.pools.get('later')?.conflict?.reason, 'cidr_overlap');
  assert.equal(r.pools.get('older')?.conflict, undefined);
  assert.deepEqual(ips(r, 'default/s'), []);
  const resolved = allocate([later], [s]);
  assert.equal(resolved.pools.get('later')?.conflict, undefined);
  assert.deepEqual(ips(resolved, 'default/s'), ['10.0.3.200']);
});

test('disabled pools keep existing allocations and make no new ones', () => {
  const p = pool('p', { blocks: [{ cidr: '10.0.5.0/24' }], disabled: true });
  const r = allocate([p], [svc('kept', { ips: ['10.0.5.9'] }), svc('new')]);
  assert.deepEqual(ips(r, 'default/kept'), ['10.0.5.9']);
  assert.deepEqual(ips(r, 'default/new'), []);
});

test('requested IPs: valid ones assigned, a taken one refused, one outside every pool refused', () => {
  const p = pool('p', { blocks: [{ cidr: '10.0.6.0/24' }] });
  const r = allocate(
    [p],
    [
      svc('first', { annotations: { 'lbipam.cilium.io/ips': '10.0.6.50,10.0.6.51' } }),
      svc('legacy', { spec: { loadBalancerIP: '10.0.6.60' } }),
      svc('taken', { annotations: { 'lbipam.cilium.io/ips': '10.0.6.50' } }),
      svc('outside', { annotations: { 'lbipam.cilium.io/ips': '192.0.2.1' } }),
      svc('garbage', { annotations: { 'lbipam.cilium.io/ips': 'not-an-ip' } }),
    ],
  );
  assert.deepEqual(ips(r, 'default/first'), ['10.0.6.50', '10.0.6.51']);
  assert.deepEqual(ips(r, 'default/legacy'), ['10.0.6.60']);
  assert.equal(reason(r, 'default/taken'), 'already_allocated');
  assert.deepEqual(ips(r, 'default/taken'), []);
  assert.equal(reason(r, 'default/outside'), 'no_pool');
  assert.equal(reason(r, 'default/garbage'), 'invalid_request');
});

test('sharing: the same key shares one address unless ports clash; across namespaces only when both allow it', () => {
  const p = pool('p', { blocks: [{ cidr: '10.0.7.0/24' }] });
  const key = { 'lbipam.cilium.io/sharing-key': 'k' };
  const r = allocate(
    [p],
    [
      svc('a', { annotations: key, ports: [80] }),
      svc('b', { annotations: key, ports: [443] }),
      svc('clash', { annotations: key, ports: [80] }),
      svc('other-ns', { ns: 'x', annotations: key, ports: [8080] }),
      svc('cross', { ns: 'y', annotations: { ...key, 'lbipam.cilium.io/sharing-cross-namespace': '*' }, ports: [9090] }),
    ],
  );
  assert.deepEqual(ips(r, 'default/a'), ['10.0.7.0']);
  assert.deepEqual(ips(r, 'default/b'), ['10.0.7.0']);
  assert.deepEqual(ips(r, 'default/clash'), ['10.0.7.1']);
  assert.notDeepEqual(ips(r, 'x/other-ns'), ['10.0.7.0'], 'another namespace without the annotation does not share');
  // "cross" allows every namespace, but the default-namespace Services do not allow "y": no sharing either.
  assert.notDeepEqual(ips(r, 'y/cross'), ['10.0.7.0']);
  const both = allocate(
    [p],
    [svc('a2', { annotations: { ...key, 'lbipam.cilium.io/sharing-cross-namespace': 'y' }, ports: [80] }), svc('c2', { ns: 'y', annotations: { ...key, 'lbipam.cilium.io/sharing-cross-namespace': 'default' }, ports: [81] })],
  );
  assert.deepEqual(ips(both, 'y/c2'), ips(both, 'default/a2'));
  assert.equal(r.pools.get('p')?.used, 4);
});

test('dual stack: one address per family; PreferDualStack is satisfied by one family, RequireDualStack is not', () => {
  const v4 = pool('v4', { blocks: [{ cidr: '10.0.8.0/24' }] });
  const v6 = pool('v6', { blocks: [{ cidr: '2001:db8:8::/120' }] });
  const dual = { ipFamilyPolicy: 'RequireDualStack', ipFamilies: ['IPv6', 'IPv4'] };
  const r = allocate([v4, v6], [svc('d', { spec: dual }), svc('six', { spec: { ipFamilies: ['IPv6'] } })]);
  assert.deepEqual(ips(r, 'default/d'), ['2001:db8:8::', '10.0.8.0']);
  assert.deepEqual(ips(r, 'default/six'), ['2001:db8:8::1']);
  const onlyV4 = allocate([v4], [svc('req', { spec: dual }), svc('pref', { spec: { ipFamilyPolicy: 'PreferDualStack' } })]);
  assert.equal(onlyV4.services.get('default/req')?.satisfied, false);
  assert.equal(onlyV4.services.get('default/pref')?.satisfied, true);
  assert.deepEqual(ips(onlyV4, 'default/pref'), ['10.0.8.1']);
});

test('restart adoption: addresses in the status are kept, in any order of arrival, and never handed out twice', () => {
  const p = pool('p', { blocks: [{ cidr: '10.0.9.0/29' }] });
  const older = svc('older', { ips: ['10.0.9.5'] });
  const newer = svc('newer', { ips: ['10.0.9.2'] });
  const fresh = svc('fresh');
  const r = allocate([p], [fresh, newer, older]);
  assert.deepEqual(ips(r, 'default/older'), ['10.0.9.5']);
  assert.deepEqual(ips(r, 'default/newer'), ['10.0.9.2']);
  assert.deepEqual(ips(r, 'default/fresh'), ['10.0.9.0']);
  // Two Services claiming one address (restored from a backup): the older keeps it, the newer gets another.
  const dup = allocate([p], [svc('dup-old', { ips: ['10.0.9.3'] }), svc('dup-new', { ips: ['10.0.9.3'] })]);
  assert.deepEqual(ips(dup, 'default/dup-old'), ['10.0.9.3']);
  assert.deepEqual(ips(dup, 'default/dup-new'), ['10.0.9.0']);
  // An address no pool covers any more is released (and replaced).
  const moved = allocate([p], [svc('gone', { ips: ['192.0.2.9'] })]);
  assert.deepEqual(ips(moved, 'default/gone'), ['10.0.9.0']);
});
