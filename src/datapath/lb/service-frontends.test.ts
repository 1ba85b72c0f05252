import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LB_F_AFFINITY, LB_F_MAGLEV, Scope } from './lb-maps.js';
import { serviceFrontends, type FrontendOptions } from './service-frontends.js';
import { endpointSlice, type EndpointSlice } from '../../k8s/endpoint-slice.js';
import { mustParse } from '../../k8s/kind.js';
import { service, type Service } from '../../k8s/service.js';

const opts: FrontendOptions = { nodeIPs: ['192.168.1.5'], algorithm: 'random', maxBackendsPerService: 3 };

function svc(spec: Record<string, unknown>, extra: Record<string, unknown> = {}): Service {
  return mustParse(service, { metadata: { name: 'web', namespace: 'shop', ...extra }, spec });
}
function slice(endpoints: unknown[], ports: unknown[], addressType = 'IPv4'): EndpointSlice {
  return mustParse(endpointSlice, { metadata: { name: 'web-x', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } }, addressType, endpoints, ports });
}

test('cluster IP, external IP, LB ingress and node ports each become a frontend with the named port\'s backends', () => {
  const s = svc({
    type: 'LoadBalancer',
    clusterIP: '10.96.0.10',
    externalIPs: ['203.0.113.7'],
    ports: [{ name: 'http', port: 80, nodePort: 30080 }, { name: 'dns', port: 53, protocol: 'UDP' }],
  });
  const withStatus: Service = { ...s, status: { loadBalancer: { ingress: [{ ip: '198.51.100.1' }] } } };
  const eps = slice([{ addresses: ['10.0.0.1'] }, { addresses: ['10.0.0.2'], conditions: { ready: false } }], [
    { name: 'http', port: 8080 },
    { name: 'dns', port: 5353, protocol: 'UDP' },
  ]);
  const r = serviceFrontends(withStatus, [eps], opts);
  const show = r.frontends.map((f) => `${f.ip}:${f.port}/${f.proto} s${f.scope} -> ${f.backends.map((b) => b.name).join(',')}`);
  assert.deepEqual(show, [
    `10.96.0.10:80/6 s${Scope.ClusterIP} -> 10.0.0.1:8080/TCP`,
    `203.0.113.7:80/6 s${Scope.ExternalIP} -> 10.0.0.1:8080/TCP`,
    `198.51.100.1:80/6 s${Scope.LoadBalancer} -> 10.0.0.1:8080/TCP`,
    `192.168.1.5:30080/6 s${Scope.NodePort} -> 10.0.0.1:8080/TCP`,
    `10.96.0.10:53/17 s${Scope.ClusterIP} -> 10.0.0.1:5353/UDP`,
    `203.0.113.7:53/17 s${Scope.ExternalIP} -> 10.0.0.1:5353/UDP`,
    `198.51.100.1:53/17 s${Scope.LoadBalancer} -> 10.0.0.1:5353/UDP`,
  ]);
});

test('headless services have no frontend; terminating endpoints get no new connections; families stay apart', () => {
  assert.deepEqual(serviceFrontends(svc({ clusterIP: 'None', ports: [{ port: 80 }] }), [], opts).frontends, []);
  const dual = svc({ clusterIPs: ['10.96.0.10', 'fd00::10'], ports: [{ port: 80 }] });
  const v4 = slice([{ addresses: ['10.0.0.1'] }, { addresses: ['10.0.0.3'], conditions: { terminating: true } }], [{ port: 8080 }]);
  const v6 = slice([{ addresses: ['fd00::1'] }], [{ port: 8080 }], 'IPv6');
  const r = serviceFrontends(dual, [v4, v6], opts);
  assert.deepEqual(
    r.frontends.map((f) => [f.ip, f.backends.map((b) => b.name)]),
    [
      ['10.96.0.10', ['10.0.0.1:8080/TCP']],
      ['fd00::10', ['fd00::1:8080/TCP']],
    ],
  );
});

test('affinity and Maglev become flags; more backends than allowed are capped and reported', () => {
  const s = svc(
    { clusterIP: '10.96.0.10', ports: [{ port: 80 }], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 30 } } },
    { annotations: { 'service.cilium.io/lb-algorithm': 'maglev' } },
  );
  const eps = slice([1, 2, 3, 4, 5].map((i) => ({ addresses: [`10.0.0.${i}`] })), [{ port: 8080 }]);
  const r = serviceFrontends(s, [eps], opts);
  const [f] = r.frontends;
  assert.equal(f?.flags, LB_F_AFFINITY | LB_F_MAGLEV);
  assert.equal(f?.affinityTimeout, 30);
  assert.equal(f?.backends.length, 3);
  assert.deepEqual(r.capped, [['10.96.0.10:80/TCP', 5]]);
  assert.equal(serviceFrontends(svc({ clusterIP: '10.96.0.10', ports: [{ port: 80 }], sessionAffinity: 'ClientIP' }), [], opts).frontends[0]?.affinityTimeout, 10800);
});

test('SCTP ports and ExternalName services are skipped with a reason', () => {
  const r = serviceFrontends(svc({ clusterIP: '10.96.0.10', ports: [{ port: 80, protocol: 'SCTP' }] }), [], opts);
  assert.deepEqual(r.frontends, []);
  assert.match(r.skipped[0] ?? '', /SCTP/);
  assert.match(serviceFrontends(svc({ type: 'ExternalName', ports: [] }), [], opts).skipped[0] ?? '', /ExternalName/);
});

test('externalTrafficPolicy Local: external frontends keep only this node\'s endpoints, the cluster IP keeps all', () => {
  const s = svc({ type: 'LoadBalancer', clusterIP: '10.96.0.11', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30081 }] });
  const eps = slice([{ addresses: ['10.0.0.1'], nodeName: 'here' }, { addresses: ['10.0.0.2'], nodeName: 'there' }], [{ name: 'http', port: 8080 }]);
  const show = (nodeName: string) =>
    serviceFrontends(s, [eps], { ...opts, nodeName }).frontends.map((f) => `${f.ip} s${f.scope} -> ${f.backends.map((b) => b.name).join(',')}`);
  assert.deepEqual(show('here'), [`10.96.0.11 s${Scope.ClusterIP} -> 10.0.0.1:8080/TCP,10.0.0.2:8080/TCP`, `192.168.1.5 s${Scope.NodePort} -> 10.0.0.1:8080/TCP`]);
  assert.deepEqual(show('elsewhere'), [`10.96.0.11 s${Scope.ClusterIP} -> 10.0.0.1:8080/TCP,10.0.0.2:8080/TCP`, `192.168.1.5 s${Scope.NodePort} -> `]);
});

test('a Gateway\'s Service (its label, no selector) keeps its cluster IP but not its LoadBalancer address: the Envoy listener serves that', () => {
  const gw = svc({ type: 'LoadBalancer', clusterIP: '10.96.0.20', ports: [{ name: 'port-80', port: 80 }] }, { labels: { 'gateway.networking.k8s.io/gateway-name': 'same-namespace' } });
  const withStatus: Service = { ...gw, status: { loadBalancer: { ingress: [{ ip: '203.0.113.0' }] } } };
  const r = serviceFrontends(withStatus, [], opts);
  assert.deepEqual(r.frontends.map((f) => `${f.ip}:${f.port} s${f.scope}`), [`10.96.0.20:80 s${Scope.ClusterIP}`]);
  assert.match(r.skipped.join('\n'), /Gateway's addresses are served by the node's Envoy/);
  // The same label on a Service with a selector is an ordinary Service: its LB address is balanced.
  const selected: Service = { ...withStatus, spec: { ...withStatus.spec, selector: { app: 'web' } } };
  assert.ok(serviceFrontends(selected, [], opts).frontends.some((f) => f.scope === Scope.LoadBalancer));
});
