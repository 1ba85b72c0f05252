import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadPolicyText } from './loader.js';

function cnp(spec: string, name = 'p'): string {
  return `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
${spec
  .trim()
  .split('\n')
  .map((l) => `  ${l}`)
  .join('\n')}
`;
}

function problems(text: string): Array<{ path: string; code: string }> {
  return loadPolicyText(text, 'x.yaml').problems.map((p) => ({ path: p.path, code: p.code }));
}

const sel = 'endpointSelector: {matchLabels: {app: a}}';

const cases: Array<[string, string, { path: string; code: string }]> = [
  ['unknown field', `${sel}\ningress: [{fromEndpoint: [{}]}]`, { path: 'spec.ingress[0].fromEndpoint', code: 'UNKNOWN_FIELD' }],
  ['wrong type', `${sel}\ningress: [{fromCIDR: "10.0.0.0/8"}]`, { path: 'spec.ingress[0].fromCIDR', code: 'WRONG_TYPE' }],
  [
    'invalid regex',
    `${sel}\ningress: [{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{path: "/a(["}]}}]}]`,
    { path: 'spec.ingress[0].toPorts[0].rules.http[0].path', code: 'INVALID_REGEX' },
  ],
  ['invalid CIDR', `${sel}\negress: [{toCIDR: ["10.0.0.300/8"]}]`, { path: 'spec.egress[0].toCIDR[0]', code: 'INVALID_CIDR' }],
  ['invalid CIDR prefix length', `${sel}\negress: [{toCIDR: ["10.0.0.0/33"]}]`, { path: 'spec.egress[0].toCIDR[0]', code: 'INVALID_CIDR' }],
  [
    'except outside cidr',
    `${sel}\negress: [{toCIDRSet: [{cidr: 10.0.0.0/8, except: [11.0.0.0/16]}]}]`,
    { path: 'spec.egress[0].toCIDRSet[0].except[0]', code: 'INVALID_CIDR' },
  ],
  ['port 0', `${sel}\ningress: [{toPorts: [{ports: [{port: "0"}]}]}]`, { path: 'spec.ingress[0].toPorts[0].ports[0].port', code: 'INVALID_PORT' }],
  ['port > 65535', `${sel}\ningress: [{toPorts: [{ports: [{port: 70000}]}]}]`, { path: 'spec.ingress[0].toPorts[0].ports[0].port', code: 'INVALID_PORT' }],
  ['bad port name', `${sel}\ningress: [{toPorts: [{ports: [{port: "Http_Port"}]}]}]`, { path: 'spec.ingress[0].toPorts[0].ports[0].port', code: 'INVALID_PORT' }],
  [
    'endPort < port',
    `${sel}\ningress: [{toPorts: [{ports: [{port: "8080", endPort: 8000}]}]}]`,
    { path: 'spec.ingress[0].toPorts[0].ports[0].endPort', code: 'INVALID_PORT_RANGE' },
  ],
  [
    'L7 on UDP',
    `${sel}\ningress: [{toPorts: [{ports: [{port: "80", protocol: UDP}], rules: {http: [{method: GET}]}}]}]`,
    { path: 'spec.ingress[0].toPorts[0].ports[0].protocol', code: 'L7_NON_TCP' },
  ],
  [
    'DNS on SCTP',
    `${sel}\negress: [{toPorts: [{ports: [{port: "53", protocol: SCTP}], rules: {dns: [{matchPattern: "*"}]}}]}]`,
    { path: 'spec.egress[0].toPorts[0].ports[0].protocol', code: 'L7_NON_TCP' },
  ],
  [
    'DNS on ingress',
    `${sel}\ningress: [{toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]}]`,
    { path: 'spec.ingress[0].toPorts[0].rules.dns', code: 'DNS_ON_INGRESS' },
  ],
  [
    'deny with L7',
    `${sel}\negressDeny: [{toPorts: [{ports: [{port: "80"}], rules: {http: [{}]}}]}]`,
    { path: 'spec.egressDeny[0].toPorts[0].rules', code: 'DENY_WITH_L7' },
  ],
  ['deny with toFQDNs', `${sel}\negressDeny: [{toFQDNs: [{matchName: a.com}]}]`, { path: 'spec.egressDeny[0].toFQDNs', code: 'DENY_WITH_FQDN' }],
  ['mixed L7', `${sel}\negress: [{toPorts: [{ports: [{port: "80"}], rules: {http: [{}], kafka: [{}]}}]}]`, { path: 'spec.egress[0].toPorts[0].rules', code: 'L7_MIXED' }],
  ['no selector', `ingress: [{}]`, { path: 'spec', code: 'SELECTOR_REQUIRED' }],
  ['nodeSelector in namespaced policy', `nodeSelector: {}\ningress: [{}]`, { path: 'spec.nodeSelector', code: 'NODE_SELECTOR_NAMESPACED' }],
  ['unknown entity', `${sel}\ningress: [{fromEntities: [everything]}]`, { path: 'spec.ingress[0].fromEntities[0]', code: 'INVALID_VALUE' }],
  ['In without values', `endpointSelector: {matchExpressions: [{key: a, operator: In}]}`, { path: 'spec.endpointSelector.matchExpressions[0].values', code: 'INVALID_SELECTOR' }],
  ['invalid dns pattern', `${sel}\negress: [{toFQDNs: [{matchPattern: "a b.com"}]}]`, { path: 'spec.egress[0].toFQDNs[0].matchPattern', code: 'INVALID_DNS' }],
  ['double-star dns pattern', `${sel}\negress: [{toFQDNs: [{matchPattern: "**.example.com"}]}]`, { path: 'spec.egress[0].toFQDNs[0].matchPattern', code: 'INVALID_DNS' }],
  ['kafka role and apiKey', `${sel}\ningress: [{toPorts: [{ports: [{port: "9092"}], rules: {kafka: [{role: produce, apiKey: fetch}]}}]}]`, { path: 'spec.ingress[0].toPorts[0].rules.kafka[0]', code: 'INVALID_KAFKA' }],
  ['icmp type 0', `${sel}\ningress: [{icmps: [{fields: [{type: EchoReply}]}]}]`, { path: 'spec.ingress[0].icmps[0].fields[0].type', code: 'INVALID_ICMP' }],
  ['icmp type name', `${sel}\ningress: [{icmps: [{fields: [{type: Bogus}]}]}]`, { path: 'spec.ingress[0].icmps[0].fields[0].type', code: 'INVALID_ICMP' }],
];

for (const [name, spec, want] of cases) {
  test(`rejects ${name} with its field path`, () => {
    const got = problems(cnp(spec));
    assert.ok(
      got.some((p) => p.path === want.path && p.code === want.code),
      `want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`,
    );
  });
}

test('host policies accept DNS but not HTTP/Kafka L7 rules', () => {
  const host = (rules: string): Array<{ path: string; code: string }> =>
    problems(`apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: h}
spec:
  nodeSelector: {}
  ingress: [{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: ${rules}}]}]
`);
  assert.deepEqual(host('{http: [{method: GET}]}'), [{ path: 'spec.ingress[0].toPorts[0].rules.http', code: 'L7_ON_HOST' }]);
});

test('a valid policy has no problems', () => {
  const r = loadPolicyText(cnp(`${sel}\ningress: [{fromEndpoints: [{}], toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "/.*"}]}}]}]`));
  assert.deepEqual(r.problems, []);
  assert.equal(r.policies.length, 1);
});

test('multi-document: one bad document never disturbs the others; indexes and file are reported', () => {
  const text = [cnp(sel, 'one'), cnp(`${sel}\ningress: [{fromCIDR: ["nope"]}]`, 'two'), cnp(sel, 'three')].join('---\n');
  const r = loadPolicyText(text, 'multi.yaml');
  assert.deepEqual(
    r.policies.map((p) => [p.index, p.document.doc.metadata.name]),
    [
      [0, 'one'],
      [2, 'three'],
    ],
  );
  assert.equal(r.problems.length, 1);
  assert.deepEqual({ ...r.problems[0] }, { file: 'multi.yaml', document: 1, path: 'spec.ingress[0].fromCIDR[0]', code: 'INVALID_CIDR', message: '"nope" is not a valid CIDR or IP address' });
});

test('YAML syntax errors and unknown policy kinds are problems of their document only; other objects are skipped', () => {
  const text = [
    cnp(sel, 'ok'),
    'kind: [unclosed\n',
    'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n',
    'apiVersion: cilium.io/v2\nkind: CiliumLocalRedirectPolicy\nmetadata: {name: lrp}\n',
    'metadata: {name: no-kind}\n',
  ].join('---\n');
  const r = loadPolicyText(text, 'y.yaml');
  assert.equal(r.policies.length, 1);
  assert.deepEqual(
    r.problems.map((p) => [p.document, p.code]),
    [
      [1, 'YAML_SYNTAX'],
      [3, 'UNKNOWN_KIND'],
      [4, 'UNKNOWN_KIND'],
    ],
  );
  assert.deepEqual(r.skipped, [{ file: 'y.yaml', document: 2, path: '(document)', apiVersion: 'v1', kind: 'ConfigMap', name: 'x' }]);
});

test('fields Cilium defines but meshd does not implement are refused by name with UNSUPPORTED_FIELD; the policy is not loaded', () => {
  const r = loadPolicyText(
    cnp(`${sel}
ingress: [{fromEndpoints: [{}], authentication: {mode: required}, toPorts: [{ports: [{port: "443"}], listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: e}, name: l}}]}]
egress: [{toGroups: [{aws: {securityGroupsIds: [sg-1]}}]}]
priority: 10`),
    'u.yaml',
  );
  assert.equal(r.policies.length, 0);
  assert.deepEqual(r.problems.map((p) => [p.path, p.code]).sort(), [
    ['spec.egress[0].toGroups', 'UNSUPPORTED_FIELD'],
    ['spec.ingress[0].authentication', 'UNSUPPORTED_FIELD'],
    ['spec.ingress[0].toPorts[0].listener', 'UNSUPPORTED_FIELD'],
    ['spec.priority', 'UNSUPPORTED_FIELD'],
  ]);
});

test('fromRequires/toRequires are accepted with a DEPRECATED_FIELD warning', () => {
  const r = loadPolicyText(cnp(`${sel}\ningress: [{fromRequires: [{matchLabels: {env: prod}}]}]\negress: [{toRequires: [{matchLabels: {env: prod}}]}]`), 'r.yaml');
  assert.deepEqual(r.problems, []);
  assert.equal(r.policies.length, 1);
  assert.deepEqual(
    r.warnings.map((w) => [w.path, w.code]),
    [
      ['spec.ingress[0].fromRequires', 'DEPRECATED_FIELD'],
      ['spec.egress[0].toRequires', 'DEPRECATED_FIELD'],
    ],
  );
});

test('CiliumCIDRGroup documents are checked and returned beside the policies; CIDR set entries name exactly one source', () => {
  const group = 'apiVersion: cilium.io/v2alpha1\nkind: CiliumCIDRGroup\nmetadata: {name: g, labels: {team: a}}\nspec: {externalCIDRs: [192.0.2.0/24, "2001:db8::/32"]}\n';
  const bad = 'apiVersion: cilium.io/v2\nkind: CiliumCIDRGroup\nmetadata: {name: h}\nspec: {externalCIDRs: [nope]}\n';
  const pol = cnp(`${sel}\negress: [{toCIDRSet: [{cidrGroupRef: g, except: [192.0.2.128/25]}, {cidrGroupSelector: {matchLabels: {team: a}}}, {cidr: 10.0.0.0/8, cidrGroupRef: g}]}]`);
  const r = loadPolicyText([group, bad, pol].join('---\n'), 'g.yaml');
  assert.deepEqual(
    r.cidrGroups.map((g) => [g.group.apiVersion, g.group.metadata.name, g.group.spec.externalCIDRs.length]),
    [['cilium.io/v2alpha1', 'g', 2]],
  );
  assert.deepEqual(
    r.problems.map((p) => [p.document, p.path, p.code]),
    [
      [1, 'spec.externalCIDRs[0]', 'INVALID_CIDR'],
      [2, 'spec.egress[0].toCIDRSet[2]', 'INVALID_VALUE'],
    ],
  );
});

test('extended IP protocols take no ports', () => {
  const got = problems(cnp(`${sel}\negress: [{toPorts: [{ports: [{protocol: VRRP}, {port: "0", protocol: IGMP}, {port: "80", protocol: GRE}, {protocol: ESP, endPort: 9}]}]}]`));
  assert.deepEqual(got, [
    { path: 'spec.egress[0].toPorts[0].ports[2].port', code: 'INVALID_PORT' },
    { path: 'spec.egress[0].toPorts[0].ports[3].endPort', code: 'INVALID_PORT_RANGE' },
  ]);
});

test('JSON input and Kubernetes List are accepted', () => {
  const doc = { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'j' }, spec: { endpointSelector: {} } };
  assert.equal(loadPolicyText(JSON.stringify(doc)).policies.length, 1);
  assert.equal(loadPolicyText(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [doc, doc] })).policies.length, 2);
});

test('NetworkPolicy: named port with endPort and ipBlock mixed with selectors are rejected', () => {
  const text = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: n, namespace: default}
spec:
  podSelector: {}
  ingress:
    - from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]
      ports: [{port: http, endPort: 90}]
`;
  const got = problems(text);
  assert.ok(got.some((p) => p.path === 'spec.ingress[0].from[0]' && p.code === 'INVALID_VALUE'), JSON.stringify(got));
  assert.ok(got.some((p) => p.path === 'spec.ingress[0].ports[0].endPort' && p.code === 'INVALID_PORT_RANGE'), JSON.stringify(got));
});
