import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ciliumCidrGroup, cidrGroupInput } from './cilium-cidr-group.js';
import { parseResource } from './kinds.js';

test('CiliumCIDRGroup: v2 and v2alpha1 parse to the same shape; the engine input copies name, labels and CIDRs', () => {
  for (const apiVersion of ['cilium.io/v2', 'cilium.io/v2alpha1']) {
    const r = parseResource({ apiVersion, kind: 'CiliumCIDRGroup', metadata: { name: 'g', labels: { a: 'b' }, uid: 'u' }, spec: { externalCIDRs: ['192.0.2.0/24', '2001:db8::1'] } });
    assert.ok(r.ok && r.value.kind === 'CiliumCIDRGroup', apiVersion);
    assert.deepEqual(cidrGroupInput(r.value), { name: 'g', labels: { a: 'b' }, cidrs: ['192.0.2.0/24', '2001:db8::1'] });
  }
});

test('CiliumCIDRGroup: a bad CIDR, an unknown field or another version is a problem at its path', () => {
  const bad = ciliumCidrGroup.parse({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: { name: 'g' }, spec: { externalCIDRs: ['10.0.0.0/8', '10.0.0.0/33'], extra: 1 } });
  assert.deepEqual(bad.ok ? [] : bad.problems.map((p) => [p.path.join('.'), p.code]), [['spec.extra', 'UNKNOWN_FIELD']]);
  const cidr = ciliumCidrGroup.parse({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: { name: 'g' }, spec: { externalCIDRs: ['10.0.0.0/8', '10.0.0.0/33'] } });
  assert.deepEqual(cidr.ok ? [] : cidr.problems.map((p) => [p.path.join('.'), p.code]), [['spec.externalCIDRs.1', 'INVALID_CIDR']]);
  const v = ciliumCidrGroup.parse({ apiVersion: 'cilium.io/v1', kind: 'CiliumCIDRGroup', metadata: { name: 'g' }, spec: { externalCIDRs: [] } });
  assert.deepEqual(v.ok ? [] : v.problems.map((p) => [p.path.join('.'), p.code]), [['apiVersion', 'INVALID_VALUE']]);
});
