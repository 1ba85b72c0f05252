/**
 * A real Envoy pointed at an xDS server over ADS, for tests and the xDS
 * benchmark. Admin listens on 127.0.0.1 port 0 (the port is read back from
 * --admin-address-path); --use-dynamic-base-id lets several run at once.
 *
 *   const envoy = await startEnvoy({ xds: bound.address, mode: 'delta', nodeId: 'n1' });
 *   t.after(() => envoy.stop());
 *   await envoy.admin('/ready');
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { findEnvoy } from '../../envoy/binary.js';
import type { ListenAddress } from '../../xds/listen.js';

export interface EnvoyHandle {
  adminUrl: string;
  nodeId: string;
  /** GET on the admin API; throws on a non-2xx status. */
  admin(path: string): Promise<string>;
  adminJson(path: string): Promise<unknown>;
  /** Port a dynamic listener is bound to (listeners use port 0). */
  listenerPort(name: string): Promise<number>;
  /** Envoy's stderr so far (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
  process: ChildProcess;
}

export interface StartEnvoyOptions {
  xds: ListenAddress;
  mode: 'sotw' | 'delta';
  nodeId: string;
  logLevel?: string;
  /** Use the per-type services (CDS, LDS) on separate streams instead of ADS. */
  perType?: boolean;
  /** ms to wait for the admin address file. */
  startTimeoutMs?: number;
}

function xdsClusterAddress(a: ListenAddress): Record<string, unknown> {
  return a.kind === 'unix' ? { pipe: { path: a.path } } : { socket_address: { address: a.host, port_value: a.port } };
}

export function bootstrap(o: StartEnvoyOptions): Record<string, unknown> {
  const apiType = o.mode === 'delta' ? 'DELTA_GRPC' : 'GRPC';
  const perType = {
    api_config_source: {
      api_type: apiType,
      transport_api_version: 'V3',
      grpc_services: [{ envoy_grpc: { cluster_name: 'meshd-xds' } }],
      set_node_on_first_message_only: true,
    },
    resource_api_version: 'V3',
  };
  return {
    node: { id: o.nodeId, cluster: 'meshd-test' },
    dynamic_resources: o.perType ? { cds_config: perType, lds_config: perType } : {
      ads_config: {
        api_type: apiType,
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: 'meshd-xds' } }],
        set_node_on_first_message_only: true,
      },
      cds_config: { ads: {}, resource_api_version: 'V3' },
      lds_config: { ads: {}, resource_api_version: 'V3' },
    },
    static_resources: {
      clusters: [
        {
          name: 'meshd-xds',
          type: 'STATIC',
          connect_timeout: '1s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: {
            cluster_name: 'meshd-xds',
            endpoints: [{ lb_endpoints: [{ endpoint: { address: xdsClusterAddress(o.xds) } }] }],
          },
        },
      ],
    },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
  };
}

export async function startEnvoy(o: StartEnvoyOptions): Promise<EnvoyHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-xds-envoy-'));
  const cfg = join(dir, 'bootstrap.json');
  const adminPath = join(dir, 'admin-address');
  writeFileSync(cfg, JSON.stringify(bootstrap(o)));
  const bin = findEnvoy().path;
  const child = spawn(
    bin,
    ['-c', cfg, '--admin-address-path', adminPath, '--use-dynamic-base-id', '--concurrency', '1', '-l', o.logLevel ?? 'warning', '--disable-hot-restart'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const stop = async (): Promise<void> => {
    if (!exited) {
      const gone = new Promise<void>((res) => child.once('exit', () => res()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  let adminUrl = '';
  const deadline = Date.now() + (o.startTimeoutMs ?? 20_000);
  while (Date.now() < deadline) {
    if (exited) break;
    try {
      const addr = readFileSync(adminPath, 'utf8').trim();
      if (addr) {
        adminUrl = `http://${addr}`;
        break;
      }
    } catch {
      // not written yet
    }
    await sleep(20);
  }
  if (!adminUrl) {
    await stop();
    throw new Error(`envoy did not start: ${exited ? 'exited' : 'timed out'}\n${stderr}`);
  }
  const admin = async (path: string): Promise<string> => {
    const r = await request(`${adminUrl}${path}`);
    const body = await r.body.text();
    if (r.statusCode < 200 || r.statusCode > 299) throw new Error(`admin ${path}: HTTP ${r.statusCode}: ${body}`);
    return body;
  };
  const adminJson = async (path: string): Promise<unknown> => JSON.parse(await admin(path));
  return {
    adminUrl,
    nodeId: o.nodeId,
    admin,
    adminJson,
    async listenerPort(name) {
      const doc = await adminJson('/listeners?format=json');
      const statuses = typeof doc === 'object' && doc !== null && 'listener_statuses' in doc ? doc.listener_statuses : undefined;
      if (Array.isArray(statuses)) {
        for (const s of statuses) {
          if (typeof s !== 'object' || s === null || !('name' in s) || s.name !== name || !('local_address' in s)) continue;
          const la = s.local_address;
          const sa = typeof la === 'object' && la !== null && 'socket_address' in la ? la.socket_address : undefined;
          const port = typeof sa === 'object' && sa !== null && 'port_value' in sa ? sa.port_value : undefined;
          if (typeof port === 'number' && port > 0) return port;
        }
      }
      throw new Error(`listener ${name} has no bound port in /listeners: ${JSON.stringify(doc)}`);
    },
    logs: () => stderr,
    stop,
    process: child,
  };
}
