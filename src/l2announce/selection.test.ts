import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ciliumL2AnnouncementPolicy } from '../k8s/cilium-l2-announcement-policy.js';
import { mustParse } from '../k8s/kind.js';
import { LbServiceSchema } from '../lbipam/lb-service.js';
import { candidates, leaseName } from './selection.js';

const policy = (name: string, spec: Record<string, unknown>) => mustParse(ciliumL2AnnouncementPolicy, { apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumL2AnnouncementPolicy', metadata: { name }, spec });
const svc = (name: string, o: { labels?: Record<string, string>; spec?: Record<string, unknown>; ips?: string[] } = {}) =>
  LbServiceSchema.parse({ metadata: { name, namespace: 'default', labels: o.labels ?? {} }, spec: { type: 'LoadBalancer', ...o.spec }, status: { loadBalancer: { ingress: (o.ips ?? []).map((ip) => ({ ip })) } } });

test('a policy selects nodes, Services and interfaces; several policies add up', () => {
  const policies = [
    policy('lb', { loadBalancerIPs: true, interfaces: ['^eth0$'], serviceSelector: { matchLabels: { app: 'web' } } }),
    policy('ext', { externalIPs: true, interfaces: ['^eth1$'], nodeSelector: { matchLabels: { edge: 'true' } } }),
  ];
  const services = [
    svc('web', { labels: { app: 'web' }, ips: ['10.0.10.5'], spec: { externalIPs: ['192.0.2.7'] } }),
    svc('other-class', { labels: { app: 'web' }, ips: ['10.0.10.6'], spec: { loadBalancerClass: 'example.com/lb' } }),
    svc('pending', { labels: { app: 'web' } }),
  ];
  const plain = candidates({ policies, services, nodeLabels: {}, interfaces: ['eth0', 'eth1', 'lxc123'] });
  assert.deepEqual([...plain.keys()], ['default/web']);
  assert.deepEqual(plain.get('default/web'), { namespace: 'default', name: 'web', ips: ['10.0.10.5'], interfaces: ['eth0'] });
  const edge = candidates({ policies, services, nodeLabels: { edge: 'true' }, interfaces: ['eth0', 'eth1'] });
  assert.deepEqual(edge.get('default/web')?.ips, ['10.0.10.5', '192.0.2.7']);
  assert.deepEqual(edge.get('default/web')?.interfaces, ['eth0', 'eth1']);
  assert.deepEqual([...candidates({ policies, services, nodeLabels: {}, interfaces: ['wlan0'] }).keys()], [], 'no matching interface: no candidate');
  const all = candidates({ policies: [policy('all', { loadBalancerIPs: true })], services, nodeLabels: {}, interfaces: ['eth0', 'lxc123'] });
  assert.deepEqual(all.get('default/web')?.interfaces, ['eth0'], 'without interfaces, pod veths are never used');
  assert.equal(leaseName({ namespace: 'default', name: 'web' }), 'cilium-l2announce-default-web');
});

test('a policy with a bad interface regex or selector is refused with the field', () => {
  const r = ciliumL2AnnouncementPolicy.parse({ apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumL2AnnouncementPolicy', metadata: { name: 'x' }, spec: { interfaces: ['eth(['], nodeSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } } });
  assert.deepEqual(r.ok ? [] : r.problems.map((p) => [p.path.join('.'), p.code]), [
    ['spec.interfaces.0', 'INVALID_REGEX'],
    ['spec.nodeSelector.matchExpressions.0.values', 'INVALID_SELECTOR'],
  ]);
});
