/**
 * TLS SNI policy (`toPorts[].serverNames`) end to end: policy YAML → engine →
 * the `meshd-tls-*` listeners in the node's real Envoy (TLS inspector +
 * network RBAC on the SNI, nothing decrypted) → the real kernel datapath
 * redirecting the port → pods in namespaces talking TLS (node's tls module).
 * The same flows go through `meshd policy trace`'s engine (traceFlow) and
 * must agree.
 *
 * Pods: client, api (TLS server on 8443 and 9443), other (a client with a
 * plain L4 allow on 8443); the api's policy is examples/policies/l4-sni.yaml.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { traceFlow, type TraceFlow } from '../../src/policy/trace.js';
import { repoPath } from '../../src/util/paths.js';
import { policyDocs, startL7World } from '../helpers/l7-world.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { makePki, startTlsServer, tlsPeer, type TlsOutcome } from '../helpers/tls-peer.js';

const API_SNI = readFileSync(repoPath('examples', 'policies', 'l4-sni.yaml'), 'utf8');

const CLIENT_EGRESS_SNI = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client-sni, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toEndpoints: [{ matchLabels: { app: api } }]
      toPorts:
        - ports: [{ port: "9443", protocol: TCP }]
          serverNames: ["**.example.org"]
    - toEndpoints: [{ matchLabels: { app: api } }]
      toPorts:
        - ports: [{ port: "8443", protocol: TCP }]
`;

test('TLS SNI policy through the node Envoy and the kernel datapath: exact and wildcard names allowed, other and missing SNI refused, trace agrees', async (t) => {
  requirePrivileges();
  const pki = await makePki('sni');
  t.after(() => pki.remove());
  const cert = await pki.leaf('api', 'api.example.com', ['api.example.com']);
  const w = await startL7World(t, { tag: 'sni', octet: 92, portBase: 23000, pods: [['client', 0], ['api', 4], ['other', 8]], policies: API_SNI });
  const { sb, pod, engine, sync } = w;
  const api = pod('api');
  const server = await startTlsServer(api.ns, cert.crt, cert.key, [8443, 9443], (fn) => sb.defer(fn));

  const r = await sync();
  assert.deepEqual(r.redirects, [{ endpointId: 'default/api', direction: 'ingress', kind: 'tls', proxyPort: w.proxy.proxyPort('tls', 'ingress') }]);
  assert.deepEqual(r.unsupported, []);

  const connect = (from: string, port: number, sni?: string): Promise<TlsOutcome> => tlsPeer(pod(from).ns, ['connect', api.ip, String(port), sni ?? '']);
  const hostApi = w.net(5);
  const passed = (o: TlsOutcome, sni: string) => assert.deepEqual(o, { ok: true, data: `tls ${sni} from ${hostApi}`, peerCN: 'api.example.com' }, 'reached the server through the proxy');
  const refused = (o: TlsOutcome) => {
    assert.equal(o.ok, false, `expected the connection to be closed, got ${JSON.stringify(o)}`);
    assert.match(o.code ?? '', /^(ECONNRESET|CLOSED_BEFORE_HANDSHAKE)$/, 'closed by the proxy during the handshake');
  };
  const trace = (src: string, port: number, sni?: string) => {
    const f: TraceFlow = { src: `default/${src}`, dst: 'default/api', dport: port, protocol: 'TCP', tls: sni === undefined ? {} : { sni } };
    return traceFlow(engine, { flows: [f] }, f).verdict;
  };

  await t.test('exact and single-label wildcard names connect; the server sees the proxy as the client', async () => {
    passed(await connect('client', 8443, 'api.example.com'), 'api.example.com');
    passed(await connect('client', 8443, 'API.Example.com'), 'API.Example.com');
    passed(await connect('client', 8443, 'db.svc.example.com'), 'db.svc.example.com');
    assert.equal(trace('client', 8443, 'api.example.com'), 'ALLOWED');
    assert.equal(trace('client', 8443, 'db.svc.example.com'), 'ALLOWED');
  });

  await t.test('another SNI, a two-label wildcard match and no SNI are refused, and never reach the server', async () => {
    const before = server.conns().length;
    refused(await connect('client', 8443, 'evil.example.com'));
    refused(await connect('client', 8443, 'a.b.svc.example.com'));
    refused(await connect('client', 8443));
    assert.equal(server.conns().length, before, 'no refused connection reached the server');
    assert.equal(trace('client', 8443, 'evil.example.com'), 'DENIED');
    assert.equal(trace('client', 8443, 'a.b.svc.example.com'), 'DENIED');
    assert.equal(trace('client', 8443), 'DENIED');
  });

  await t.test('a rule without serverNames on the same port keeps its meaning: any SNI (or none) from its peer, allowed in the kernel', async () => {
    const direct = (o: TlsOutcome, sni: string) => assert.deepEqual(o, { ok: true, data: `tls ${sni} from ${pod('other').ip}`, peerCN: 'api.example.com' });
    direct(await connect('other', 8443, 'anything.test'), 'anything.test');
    direct(await connect('other', 8443), '-');
    assert.equal(trace('other', 8443, 'anything.test'), 'ALLOWED');
  });

  await t.test('egress serverNames with a leading **. (any number of labels), checked together with the destination ingress rules', async () => {
    for (const d of policyDocs(CLIENT_EGRESS_SNI)) await engine.upsertPolicy(d);
    const r2 = await sync();
    assert.deepEqual(
      r2.redirects.map((x) => `${x.endpointId} ${x.direction} ${x.kind}`),
      ['default/api ingress tls', 'default/client egress tls'],
    );
    // 9443: the client's egress needs **.example.org (one or more labels before it); api's ingress allows at L4.
    passed(await connect('client', 9443, 'a.b.example.org'), 'a.b.example.org');
    passed(await connect('client', 9443, 'www.example.org'), 'www.example.org');
    assert.equal(trace('client', 9443, 'a.b.example.org'), 'ALLOWED');
    refused(await connect('client', 9443, 'example.org'));
    refused(await connect('client', 9443));
    assert.equal(trace('client', 9443, 'example.org'), 'DENIED');
    // 8443: egress allows at L4, ingress still wants the SNI.
    passed(await connect('client', 8443, 'api.example.com'), 'api.example.com');
    refused(await connect('client', 8443, 'evil.example.com'));
    assert.equal(trace('client', 8443, 'evil.example.com'), 'DENIED');
  });
});
