/**
 * meshd beside an Istio sidecar, on the real kernel: a pod namespace with a
 * real Envoy as its sidecar (uid 1337, Istio's proxy user) and Istio's own
 * outbound capture (nat chains ISTIO_OUTPUT → ISTIO_REDIRECT, REDIRECT to the
 * sidecar's 15001, the sidecar's uid skipped), and an application process in
 * the cgroup meshd's socket LB hooks. What the sidecar saw as the original
 * destination is read from the sidecar's own access log:
 *   - socketLB.hostNamespaceOnly=true: the ClusterIP, so the sidecar matches
 *     its outbound|80||web filter chain and routes by Service;
 *   - false: a backend address, already chosen at connect() before the
 *     capture — the sidecar only sees a passthrough (cilium#13882, #17276).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { findEnvoy } from '../../envoy/binary.js';
import { ServiceManager } from '../../src/datapath/lb/service-manager.js';
import { endpointSlice } from '../../src/k8s/endpoint-slice.js';
import { mustParse } from '../../src/k8s/kind.js';
import { service } from '../../src/k8s/service.js';
import { LbWorld } from '../helpers/lb-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

const PROXY_UID = 1337; // Istio's sidecar user and group
const OUTBOUND_PORT = 15001; // Istio's outbound capture port
const NS = 'istio-test';
const OUTBOUND_CLUSTER = `outbound|80||web.${NS}.svc.cluster.local`;

/** Istio's outbound capture as istio-iptables installs it (the outbound half; inbound capture is not under test). */
const ISTIO_IPTABLES = (uid: number, port: number): string[][] => [
  ['-t', 'nat', '-N', 'ISTIO_REDIRECT'],
  ['-t', 'nat', '-A', 'ISTIO_REDIRECT', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(port)],
  ['-t', 'nat', '-N', 'ISTIO_OUTPUT'],
  ['-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-j', 'ISTIO_OUTPUT'],
  ['-t', 'nat', '-A', 'ISTIO_OUTPUT', '-m', 'owner', '--uid-owner', String(uid), '-j', 'RETURN'],
  ['-t', 'nat', '-A', 'ISTIO_OUTPUT', '-m', 'owner', '--gid-owner', String(uid), '-j', 'RETURN'],
  ['-t', 'nat', '-A', 'ISTIO_OUTPUT', '-d', '127.0.0.1/32', '-j', 'RETURN'],
  ['-t', 'nat', '-A', 'ISTIO_OUTPUT', '-j', 'ISTIO_REDIRECT'],
];

const LOG_FORMAT = '%DOWNSTREAM_LOCAL_ADDRESS% %UPSTREAM_CLUSTER% %UPSTREAM_HOST%\n';

/** The sidecar: Istio's outbound listener shape (original_dst, a chain per Service, passthrough otherwise). */
function sidecarBootstrap(dir: string, vip: string, backend: string, backendPort: number): Record<string, unknown> {
  const accessLog = [
    {
      name: 'envoy.access_loggers.file',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog',
        path: join(dir, 'access.log'),
        log_format: { text_format_source: { inline_string: LOG_FORMAT } },
      },
    },
  ];
  const tcpProxy = (cluster: string) => ({
    filters: [
      {
        name: 'envoy.filters.network.tcp_proxy',
        typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: cluster, cluster, access_log: accessLog },
      },
    ],
  });
  return {
    admin: { address: { pipe: { path: join(dir, 'admin.sock') } } },
    static_resources: {
      listeners: [
        {
          name: 'virtualOutbound',
          address: { socket_address: { address: '0.0.0.0', port_value: OUTBOUND_PORT } },
          listener_filters: [{ name: 'envoy.filters.listener.original_dst', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst' } }],
          filter_chains: [{ name: OUTBOUND_CLUSTER, filter_chain_match: { prefix_ranges: [{ address_prefix: vip, prefix_len: 32 }], destination_port: 80 }, ...tcpProxy(OUTBOUND_CLUSTER) }],
          default_filter_chain: { name: 'PassthroughFilterChain', ...tcpProxy('PassthroughCluster') },
        },
      ],
      clusters: [
        {
          name: OUTBOUND_CLUSTER,
          type: 'STATIC',
          connect_timeout: '2s',
          load_assignment: { cluster_name: OUTBOUND_CLUSTER, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: backend, port_value: backendPort } } } }] }] },
        },
        { name: 'PassthroughCluster', type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: '2s' },
      ],
    },
  };
}

async function startSidecar(w: LbWorld, dir: string, bootstrap: Record<string, unknown>): Promise<ChildProcess> {
  const cfg = join(dir, 'sidecar.json');
  writeFileSync(cfg, JSON.stringify(bootstrap));
  chmodSync(dir, 0o777);
  // In the pod's cgroup and namespace, as Istio's proxy user.
  const envoy = spawn(
    'bash',
    [
      '-c',
      'echo $$ > "$0/cgroup.procs" && exec "$@"',
      w.cgroup.path,
      ...['ip', 'netns', 'exec', w.pod, 'setpriv', `--reuid=${PROXY_UID}`, `--regid=${PROXY_UID}`, '--clear-groups'],
      ...[findEnvoy().path, '-c', cfg, '--disable-hot-restart', '--log-level', 'warn', '--file-flush-interval-msec', '100'],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  envoy.stderr?.on('data', (d) => (err += String(d)));
  // Ready when its outbound listener accepts inside the namespace.
  for (let i = 0; i < 100; i++) {
    if (envoy.exitCode !== null) throw new Error(`sidecar Envoy exited ${envoy.exitCode}: ${err}`);
    if (existsSync(join(dir, 'admin.sock'))) {
      const r = await w.sb.exec(w.pod, 'ss', ['-Hltn', `sport = :${OUTBOUND_PORT}`]).catch(() => ({ stdout: '' }));
      if (r.stdout.includes(String(OUTBOUND_PORT))) return envoy;
    }
    await sleep(100);
  }
  envoy.kill('SIGKILL');
  throw new Error(`sidecar Envoy did not listen on ${OUTBOUND_PORT}: ${err}`);
}

async function accessLogLines(dir: string, want: number): Promise<string[]> {
  const file = join(dir, 'access.log');
  for (let i = 0; i < 100; i++) {
    const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
    if (lines.length >= want) return lines;
    await sleep(100);
  }
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

test('Istio sidecar capture: with socketLB.hostNamespaceOnly=true the sidecar sees the ClusterIP and routes by Service; with false it sees a backend (its own access log)', async (t) => {
  requirePrivileges();
  const w = await LbWorld.create('istio');
  t.after(() => w.cleanup());
  const vip = `${w.vipNet}.80`;
  const backendPort = 8080;

  // The Service's backend: a host-network server on the node's side of the pod's veth.
  const backend: Server = createServer((s) => s.end('backend'));
  await new Promise<void>((resolve, reject) => backend.once('error', reject).listen(backendPort, w.hostIp, resolve));
  t.after(() => new Promise<void>((resolve) => backend.close(() => resolve())));

  for (const args of ISTIO_IPTABLES(PROXY_UID, OUTBOUND_PORT)) await w.sb.exec(w.pod, 'iptables', ['-w', '5', ...args]);

  const dir = mkdtempSync(join(tmpdir(), 'meshd-istio-sidecar-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sidecar = await startSidecar(w, dir, sidecarBootstrap(dir, vip, w.hostIp, backendPort));
  t.after(async () => {
    sidecar.kill('SIGKILL');
    if (sidecar.exitCode === null && sidecar.signalCode === null) await new Promise((r) => sidecar.once('exit', r));
  });

  const svc = mustParse(service, { metadata: { name: 'web', namespace: NS }, spec: { clusterIP: vip, ports: [{ name: 'http', port: 80 }] } });
  const slice = mustParse(endpointSlice, {
    metadata: { name: 'web-1', namespace: NS, labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [w.hostIp] }],
    ports: [{ name: 'http', port: backendPort }],
  });

  const seen: Record<'true' | 'false', string[]> = { true: [], false: [] };
  let logged = 0;
  for (const hostNamespaceOnly of [true, false]) {
    const mgr = await ServiceManager.open({ pinDir: w.pins.path, cgroupPath: w.cgroup.path, hostNamespaceOnly, logger: () => undefined });
    try {
      mgr.replaceAll([svc], [slice]);
      // The application: in the pod's namespace and in the cgroup meshd hooks, connecting to the ClusterIP.
      const replies = await w.tcp(vip, 80, 2, w.pod);
      assert.deepEqual(replies.map((r) => ('reply' in r ? r.reply : `error:${r.error}`)), ['backend', 'backend'], `hostNamespaceOnly=${hostNamespaceOnly}: the app reached the backend through the sidecar`);
      const lines = await accessLogLines(dir, logged + 2);
      seen[String(hostNamespaceOnly) as 'true' | 'false'] = lines.slice(logged);
      logged = lines.length;
    } finally {
      mgr.detach();
      mgr.close();
    }
  }
  const backendAddr = `${w.hostIp}:${backendPort}`;
  // true: the original destination is the ClusterIP; the sidecar's Service chain picked the backend.
  assert.deepEqual(seen.true, [`${vip}:80 ${OUTBOUND_CLUSTER} ${backendAddr}`, `${vip}:80 ${OUTBOUND_CLUSTER} ${backendAddr}`]);
  // false: the socket LB rewrote the destination at connect(); the sidecar sees the backend and passes it through.
  assert.deepEqual(seen.false, [`${backendAddr} PassthroughCluster ${backendAddr}`, `${backendAddr} PassthroughCluster ${backendAddr}`]);
});
