/**
 * Node commands that ask the running agent over its local API:
 *
 *   meshd status                      agent, Envoy, xDS versions/NACKs, datapath, counts
 *   meshd endpoint list | get ID      local endpoints (ID = namespace/name)
 *   meshd identity list               security identities and their labels
 *   meshd service list                services and backends as programmed
 *   meshd bpf policy get ENDPOINT     the endpoint's policy map as the kernel holds it
 *   meshd proxy list                  proxy ports, listeners and the rules behind them
 *   meshd proxy routing ensure|remove the policy routing of proxy redirects (local, no agent)
 *
 * Tables by default; `-o json|yaml` prints the agent's answer as validated
 * against the route's schema (src/api). `--api-socket PATH` (or
 * MESHD_API_SOCKET) selects the agent.
 */
import { proxyRestart } from './proxy.js';
import { apiRoutes } from '../api/index.js';
import type { StatusResponse } from '../api/status.js';
import { callApi } from './api-client.js';
import { command, type Command, type CommandGroup } from './args.js';
import { table } from './output.js';

const agentCommand = { options: {}, output: true, agent: true } as const;

/** One line: the manifest directory, or the API server, its connection state and how long it has been so. */
export function renderSource(src: StatusResponse['source'], now = Date.now()): string {
  if (src.type === 'standalone') return `standalone, manifests in ${src.dir}`;
  const forS = Math.max(0, Math.round((now - Date.parse(src.since)) / 1000));
  const kinds = Object.entries(src.kinds);
  const unsynced = kinds.filter(([, k]) => !k.synced).map(([n]) => n);
  const unserved = kinds.filter(([, k]) => k.synced && !k.served).map(([n]) => n);
  const parts = [`kubernetes ${src.server}: ${src.state} for ${forS}s`];
  if (src.state !== 'connected' && src.lastError) parts.push(`last error ${src.lastError.code}: ${src.lastError.message}`);
  if (unsynced.length > 0) parts.push(`not synced: ${unsynced.join(', ')}`);
  if (unserved.length > 0) parts.push(`not served by the API server: ${unserved.join(', ')}`);
  return parts.join('; ');
}

/** One line: this node's MeshdEndpoint writer and the other nodes' objects read into the ipcache. */
export function renderEndpointObjects(e: NonNullable<StatusResponse['endpointObjects']>): string {
  const parts = [`${e.writer.objects} written${e.writer.adopted ? '' : ' (not adopted yet)'}, ${e.writer.pendingWrites} pending`];
  if (e.writer.lastError) parts.push(`last write error ${e.writer.lastError.code} at ${e.writer.lastError.at}: ${e.writer.lastError.message}`);
  parts.push(`${e.remote.objects} of other nodes${e.remote.synced ? '' : ' (not synced)'}`);
  for (const m of e.remote.identityMismatches) parts.push(`IDENTITY MISMATCH ${m.endpoint} (node ${m.node}): object says ${m.objectIdentity}, this node has ${m.localIdentity}`);
  return parts.join('; ');
}

function renderStatus(s: StatusResponse): string {
  const { agent, counts, datapath: dp } = s;
  const proxy = 'envoy' in s.envoy ? s.envoy : null;
  const envoy = proxy?.envoy;
  const lines = [
    `Agent:     ${agent.state} (meshd ${agent.version}, node ${agent.nodeName}, ${agent.mode} mode, up ${agent.uptimeS}s)`,
    `Envoy:     ${envoy ? `${envoy.state}${envoy.version ? ` (Envoy ${envoy.version}, pid ${envoy.pid ?? '-'}, restarts ${envoy.restarts})` : ''}${envoy.steering ? `, steering by ${envoy.steering.path}` : ''}` : 'disabled'}`,
    `Source:    ${renderSource(s.source)}`,
    `Pod CIDR:  ${s.ipam.state === 'ready' ? `${s.ipam.cidr ?? ''} (${s.ipam.mode}, from ${s.ipam.source ?? '-'}: ${s.ipam.detail})` : `pending (${s.ipam.mode}): ${s.ipam.code ?? ''} ${s.ipam.detail}`}`,
    ...(s.endpointObjects ? [`Endpoint objects: ${renderEndpointObjects(s.endpointObjects)}`] : []),
    `Datapath:  ${dp.endpoints} endpoints attached, ${dp.ipcacheEntries} ipcache entries, pins at ${dp.pinDir}`,
    ...Object.entries(dp.pending).map(([id, why]) => `  pending: ${id}: ${why}`),
    `NodePort:  ${s.nodePort ? `${s.nodePort.mode} on ${s.nodePort.devices.map((d) => `${d.name} (${d.addresses.join(', ') || 'no address'})`).join(', ')}` : 'disabled'}`,
    `Host FW:   ${s.hostFirewall ? `${s.hostFirewall.auditMode ? 'audit mode (nothing dropped)' : 'enforcing'} on ${s.hostFirewall.devices.map((d) => d.name).join(', ')}` : 'disabled'}`,
    `Counts:    ${Object.entries(counts)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
  ];
  // The proxy's latest configuration is not in force (NACK or ACK timeout): the previous one and the endpoints' previous policies stay.
  if (s.proxy?.error) lines.push(`Proxy:     held at ${s.proxy.version || '(none)'} since ${s.proxy.at}: ${s.proxy.errorCode ? `${s.proxy.errorCode}: ` : ''}${s.proxy.error}`);
  const last = proxy?.lastError;
  if (last) {
    const what = last.change.policies.length > 0 ? `; policies: ${last.change.policies.join(', ')}` : '';
    lines.push(`Last proxy error: ${last.code}, version ${last.version} at ${last.at}: ${last.message}${what}`);
  }
  const types = Object.entries(proxy?.xds?.types ?? {});
  if (types.length > 0) {
    lines.push('xDS:', table(['TYPE', 'SENT', 'ACKED', 'NACKED'], types.map(([k, t]) => [k, t.sent?.snapshotVersion, t.acked?.snapshotVersion, t.nacked?.snapshotVersion])));
  }
  const nack = proxy?.lastNack;
  if (nack) lines.push(`Last NACK: version ${nack.version} at ${nack.at}: ${nack.message}`);
  return lines.join('\n');
}

export const status: Command = command({ name: 'status', summary: 'the running agent: Envoy, xDS versions and NACKs, datapath, counts', ...agentCommand }, async (args, io) => {
  const s = await callApi(args.apiSocket, apiRoutes.status);
  io.out(args.format(s, () => renderStatus(s)));
  return 0;
});

export const endpoint: CommandGroup = {
  name: 'endpoint',
  summary: 'the local endpoints (pods) the agent manages',
  subcommands: [
    command({ name: 'endpoint list', summary: 'list local endpoints with identity, addresses and enforcement', ...agentCommand }, async (args, io) => {
      const v = await callApi(args.apiSocket, apiRoutes.endpoints);
      const rows = v.endpoints.map((e) => [e.id, e.identity, e.ips.join(','), e.ifname, e.ingressEnforcement, e.egressEnforcement, e.labels]);
      io.out(args.format(v, () => table(['ENDPOINT', 'IDENTITY', 'IPS', 'INTERFACE', 'INGRESS', 'EGRESS', 'LABELS'], rows)));
      return 0;
    }),
    command({ name: 'endpoint get', summary: 'one endpoint and its computed policy', args: 'ID', positionals: { min: 1, max: 1 }, ...agentCommand }, async (args, io) => {
      const e = await callApi(args.apiSocket, apiRoutes.endpoint, { query: { id: args.positionals[0] ?? '' } });
      io.out(args.format(e, () => JSON.stringify(e, null, 2)));
      return 0;
    }),
  ],
};

export const identity: CommandGroup = {
  name: 'identity',
  summary: 'security identities',
  subcommands: [
    command({ name: 'identity list', summary: 'list security identities and their labels', ...agentCommand }, async (args, io) => {
      const v = await callApi(args.apiSocket, apiRoutes.identities);
      io.out(args.format(v, () => table(['ID', 'SCOPE', 'LABELS'], v.identities.map((i) => [i.id, i.scope, i.labels.join(' ')]))));
      return 0;
    }),
  ],
};

export const service: CommandGroup = {
  name: 'service',
  summary: 'services as the agent holds them',
  subcommands: [
    command({ name: 'service list', summary: 'list services, their cluster IPs, ports and selectors', ...agentCommand }, async (args, io) => {
      const v = await callApi(args.apiSocket, apiRoutes.services);
      const rows = v.services.map((s) => [`${s.namespace}/${s.name}`, s.clusterIPs?.join(','), s.ports?.map((p) => `${p.port}/${p.protocol ?? 'TCP'}`).join(','), s.selector]);
      io.out(args.format(v, () => table(['SERVICE', 'CLUSTER IPS', 'PORTS', 'SELECTOR'], rows)));
      return 0;
    }),
  ],
};

export const bpf: CommandGroup = {
  name: 'bpf',
  summary: 'the datapath as the kernel holds it, through the agent',
  subcommands: [
    command(
      { name: 'bpf policy get', summary: "an endpoint's policy map as the kernel holds it", args: 'ENDPOINT', positionals: { min: 1, max: 1 }, ...agentCommand },
      async (args, io) => {
        const v = await callApi(args.apiSocket, apiRoutes.bpfPolicy, { query: { endpoint: args.positionals[0] ?? '' } });
        const rows = v.entries.map((e) => [e.direction, e.identity, e.protocol, e.ports, e.verdict, e.proxyPort]);
        io.out(args.format(v, () => table(['DIRECTION', 'IDENTITY', 'PROTO', 'PORTS', 'VERDICT', 'PROXY PORT'], rows)));
        return 0;
      },
    ),
  ],
};

const routing = (verb: 'ensure' | 'remove'): Command =>
  command(
    {
      name: `proxy routing ${verb}`,
      summary: `${verb === 'ensure' ? 'install' : 'remove'} the fwmark rule and local route that deliver redirected flows to Envoy (local, no agent needed)`,
      options: {},
    },
    async () => {
      const { ensurePolicyRouting, removePolicyRouting } = await import('../proxy/policy-routing.js');
      await (verb === 'remove' ? removePolicyRouting() : ensurePolicyRouting());
      return 0;
    },
  );

export const proxy: CommandGroup = {
  name: 'proxy',
  summary: 'the L7 proxy: ports, listeners and policy routing',
  subcommands: [
    command({ name: 'proxy list', summary: 'list proxy listeners, their ports, endpoints and ACKed versions', ...agentCommand }, async (args, io) => {
      const v = await callApi(args.apiSocket, apiRoutes.proxy);
      const listeners = 'listeners' in v ? v.listeners : [];
      io.out(args.format(v, () => ('listeners' in v ? table(['LISTENER', 'PORT', 'ENDPOINTS', 'ACKED VERSION'], listeners.map((l) => [l.name, l.port, l.endpoints.join(','), l.ackedVersion])) : 'proxy disabled (envoy.enabled=false)')));
      return 0;
    }),
    routing('ensure'),
    routing('remove'),
    proxyRestart,
  ],
};
