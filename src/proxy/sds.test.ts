import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveSdsSecrets, type SecretRef, withoutUnusable } from './sds.js';

const ref = (secret: string, use: 'certificate' | 'ca', name: string): SecretRef => ({
  name,
  use,
  ref: { secret, certificate: 'tls.crt', privateKey: 'tls.key', trustedCA: 'ca.crt' },
  policies: ['default/p'],
  field: use === 'certificate' ? 'terminatingTLS' : 'originatingTLS',
});

test('a bad Secret keeps its last good version; one that never had one is unusable; each is reported with its code', () => {
  const refs = [ref('default/a', 'certificate', 'cert-a'), ref('default/b', 'ca', 'ca-b'), ref('default/a', 'certificate', 'cert-a')];
  const previous = [{ name: 'cert-a', tls_certificate: { certificate_chain: { inline_string: 'last good' } } }];
  const data = new Map([['default/a', { 'tls.crt': 'not PEM', 'tls.key': 'not PEM' }]]);
  const r = resolveSdsSecrets(refs, data, previous);
  assert.deepEqual(r.secrets, previous, 'the last good version stands in');
  assert.deepEqual([...r.unusable], ['ca-b']);
  assert.deepEqual(
    r.problems.map((p) => p.code),
    ['MESHD_PROXY_SECRET_INVALID', 'MESHD_PROXY_SECRET_MISSING'],
    'one problem per bad Secret, not per reference',
  );
  assert.ok(r.problems[1]?.message.includes('originatingTLS.secret default/b'));
});

test('what names an unusable secret is left out: its clusters, the chains that use it or route to such a cluster, listeners left empty', () => {
  const sds = (name: string) => ({ name, sds_config: { ads: {} } });
  const out = {
    listeners: [
      {
        name: 'meshd-tls-egress',
        filter_chains: [
          { name: 'intercept', transport_socket: { typed_config: { common_tls_context: { tls_certificate_sds_secret_configs: [sds('cert-a')] } } } },
          { name: 'route-to-b', filters: [{ typed_config: { route_config: { cluster: 'upstream-b' } } }] },
          { name: 'sni-only', filters: [{ name: 'tcp_proxy', typed_config: { cluster: 'original-dst' } }] },
        ],
      },
      { name: 'meshd-only-b', filter_chains: [{ name: 'b', transport_socket: sds('ca-b') }] },
      { name: 'meshd-http-ingress', filter_chains: [{ name: 'x', filters: [] }] },
    ],
    clusters: [{ name: 'upstream-b', transport_socket: { validation_context_sds_secret_config: sds('ca-b') } }, { name: 'original-dst' }],
  };
  assert.equal(withoutUnusable(out, new Set()), out, 'nothing unusable: the same output');
  const pruned = withoutUnusable(out, new Set(['ca-b']));
  assert.deepEqual(
    pruned.listeners.map((l) => [l.name, l.filter_chains.map((c) => c.name)]),
    [
      ['meshd-tls-egress', ['intercept', 'sni-only']],
      ['meshd-http-ingress', ['x']],
    ],
  );
  assert.deepEqual(
    pruned.clusters.map((c) => c.name),
    ['original-dst'],
  );
});
