/**
 * Secrets over xDS (SDS on the aggregated stream): a TLS listener whose
 * certificate Envoy fetches by name; rotating the secret changes the
 * certificate new connections see, without touching the listener.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect } from 'node:tls';
import { Client } from 'undici';
import { startEnvoy } from '../helpers/xds-envoy.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { run } from '../../src/util/exec.js';
import { MemoryLogger } from '../../xds/log.js';
import { XdsServer } from '../../xds/server.js';
import type { SnapshotInput } from '../../xds/snapshot.js';
import { TYPE_URL } from '../../xds/type-urls.js';
import { activeListeners, staticCluster, upstream } from './xds-behavior.js';

async function selfSigned(dir: string, cn: string): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${cn}.key`);
  const cert = join(dir, `${cn}.crt`);
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${cn}`]);
  return { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
}

function peerCn(port: number): Promise<string> {
  return new Promise((res, rej) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'meshd.test' }, () => {
      const cn = s.getPeerCertificate().subject?.CN;
      s.destroy();
      res(String(cn));
    });
    s.once('error', rej);
  });
}

for (const mode of ['sotw', 'delta'] as const) {
  test(`xDS ${mode}: a TLS listener gets its certificate over SDS; rotating the secret needs no listener change`, async (t) => {
    requirePrivileges();
    const dir = mkdtempSync(join(tmpdir(), `meshd-xds-sds-${mode}-`));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const [one, two] = await Promise.all([selfSigned(dir, 'one'), selfSigned(dir, 'two')]);
    const a = await upstream(t, 'A');
    const server = new XdsServer({ log: new MemoryLogger() });
    t.after(() => server.close());
    const bound = await server.listen(`unix:${join(dir, 'xds.sock')}`);
    const nodeId = `sds-${mode}`;
    const snap = (version: string, pair: { cert: string; key: string }): SnapshotInput => ({
      version,
      resources: {
        clusters: [staticCluster('a', a.port)],
        secrets: [{ '@type': TYPE_URL.secrets, name: 'server-cert', tls_certificate: { certificate_chain: { inline_string: pair.cert }, private_key: { inline_string: pair.key } } }],
        listeners: [
          {
            '@type': TYPE_URL.listeners,
            name: 'tls',
            address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
            filter_chains: [
              {
                transport_socket: {
                  name: 'envoy.transport_sockets.tls',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
                    common_tls_context: { tls_certificate_sds_secret_configs: [{ name: 'server-cert', sds_config: { ads: {}, resource_api_version: 'V3' } }] },
                  },
                },
                filters: [
                  {
                    name: 'envoy.filters.network.http_connection_manager',
                    typed_config: {
                      '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                      stat_prefix: 'tls',
                      route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'a' } }] }] },
                      http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
                    },
                  },
                ],
              },
            ],
          },
        ],
      },
    });
    server.setSnapshot(nodeId, snap('v1', one));
    const envoy = await startEnvoy({ xds: bound.address, mode, nodeId });
    t.after(() => envoy.stop());
    await server.waitForAck(nodeId, 'v1', { timeoutMs: 15_000 });
    const port = await envoy.listenerPort('tls');
    assert.equal(await peerCn(port), 'one');
    const client = new Client(`https://127.0.0.1:${port}`, { connect: { rejectUnauthorized: false } });
    t.after(() => client.close());
    const r = await client.request({ path: '/s', method: 'GET' });
    assert.equal(await r.body.text(), 'A /s');

    const listenersBefore = await activeListeners(envoy);
    server.setSnapshot(nodeId, snap('v2', two));
    assert.equal(server.cache.getSnapshot(nodeId)?.typeVersions.listeners, 'v1', 'only the secret changed');
    await server.waitForAck(nodeId, 'v2', { kinds: ['secrets'], timeoutMs: 15_000 });
    assert.equal(await peerCn(port), 'two');
    assert.deepEqual(await activeListeners(envoy), listenersBefore, 'the listener was not updated');
  });
}
