/**
 * Node commands that ask the running agent over its local API:
 *
 *   meshd status                      agent, Envoy, xDS versions/NACKs, datapath, counts
 *   meshd endpoint list | get ID      local endpoints (ID = namespace/name)
 *   meshd identity list               security identities and their labels
 *   meshd service list                services and backends as programmed
 *   meshd bpf policy get ENDPOINT     the endpoint's policy map as the kernel holds it
 *   meshd proxy list                  proxy ports, listeners and the rules behind them
 *
 * Tables by default; `-o json` prints the agent's answer unchanged.
 * `--api-socket PATH` (or MESHD_API_SOCKET) selects the agent.
 */
import { apiGet, apiSocket, outputJson, table } from './api-client.js';

type Row = Record<string, unknown>;

function rows(v: unknown, key: string): Row[] {
  if (typeof v === 'object' && v !== null && key in v) {
    const arr = (v as Record<string, unknown>)[key];
    if (Array.isArray(arr)) return arr.filter((x): x is Row => typeof x === 'object' && x !== null);
  }
  return [];
}

const positional = (argv: readonly string[]) => argv.filter((a, i) => !a.startsWith('-') && argv[i - 1] !== '-o' && argv[i - 1] !== '--api-socket');

function print(argv: readonly string[], value: unknown, render: () => string): void {
  process.stdout.write(`${outputJson(argv) ? JSON.stringify(value) : render()}\n`);
}

function renderStatus(s: Row): string {
  const agent = (s.agent ?? {}) as Row;
  const proxy = (s.envoy ?? {}) as Row; // the L7 proxy's status, or {state: 'disabled'}
  const envoy = (proxy.envoy ?? proxy) as Row;
  const xdsTypes = ((proxy.xds as Row | undefined)?.types ?? {}) as Record<string, Row>;
  const lastNack = proxy.lastNack as Row | null | undefined;
  const counts = (s.counts ?? {}) as Row;
  const dp = (s.datapath ?? {}) as Row;
  const pending = Object.entries((dp.pending ?? {}) as Record<string, string>);
  const ver = (x: unknown) => (x && typeof x === 'object' && 'snapshotVersion' in x ? String((x as Row).snapshotVersion) : '-');
  const lines = [
    `Agent:     ${agent.state ?? '?'} (meshd ${agent.version ?? '?'}, node ${agent.nodeName ?? '?'}, ${agent.mode ?? '?'} mode, up ${agent.uptimeS ?? '?'}s)`,
    `Envoy:     ${envoy.state ?? '?'}${envoy.version ? ` (Envoy ${envoy.version}, pid ${envoy.pid ?? '-'}, restarts ${envoy.restarts ?? 0})` : ''}`,
    `Datapath:  ${dp.endpoints ?? 0} endpoints attached, ${dp.ipcacheEntries ?? 0} ipcache entries, pins at ${dp.pinDir ?? '?'}`,
    ...pending.map(([id, why]) => `  pending: ${id}: ${why}`),
    `Counts:    ${Object.entries(counts)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(' ')}`,
  ];
  if (Object.keys(xdsTypes).length > 0) {
    lines.push('xDS:', table(['TYPE', 'SENT', 'ACKED', 'NACKED'], Object.entries(xdsTypes).map(([k, t]) => [k, ver(t.sent), ver(t.acked), ver(t.nacked)])));
  }
  if (lastNack) lines.push(`Last NACK: version ${String(lastNack.version)} at ${String(lastNack.at)}: ${String(lastNack.message)}`);
  return lines.join('\n');
}

export async function runNodeCommand(cmd: string, argv: string[]): Promise<number> {
  const sock = apiSocket(argv);
  const [sub, arg] = positional(argv);
  switch (cmd) {
    case 'status': {
      const s = await apiGet(sock, '/v1/status');
      print(argv, s, () => renderStatus(s as Row));
      return 0;
    }
    case 'endpoint': {
      if (sub === 'get' && arg) {
        const e = await apiGet(sock, `/v1/endpoint?id=${encodeURIComponent(arg)}`);
        print(argv, e, () => JSON.stringify(e, null, 2));
        return 0;
      }
      if (sub !== 'list') break;
      const v = await apiGet(sock, '/v1/endpoints');
      print(argv, v, () =>
        table(
          ['ENDPOINT', 'IDENTITY', 'IPS', 'INTERFACE', 'INGRESS', 'EGRESS', 'LABELS'],
          rows(v, 'endpoints').map((e) => [e.id, e.identity, (e.ips as string[] | undefined)?.join(','), e.ifname, e.ingressEnforcement, e.egressEnforcement, e.labels]),
        ),
      );
      return 0;
    }
    case 'identity': {
      if (sub !== 'list') break;
      const v = await apiGet(sock, '/v1/identities');
      print(argv, v, () => table(['ID', 'LABELS'], rows(v, 'identities').map((i) => [i.id, (i.labels as string[] | undefined)?.join(' ')])));
      return 0;
    }
    case 'service': {
      if (sub !== 'list') break;
      const v = await apiGet(sock, '/v1/services');
      print(argv, v, () =>
        table(
          ['SERVICE', 'CLUSTER IPS', 'PORTS', 'SELECTOR'],
          rows(v, 'services').map((s) => [
            `${String(s.namespace)}/${String(s.name)}`,
            (s.clusterIPs as string[] | undefined)?.join(','),
            (s.ports as Array<{ port: number; protocol?: string }> | undefined)?.map((p) => `${p.port}/${p.protocol ?? 'TCP'}`).join(','),
            s.selector,
          ]),
        ),
      );
      return 0;
    }
    case 'bpf': {
      if (sub !== 'policy' || arg !== 'get') break;
      const ep = positional(argv)[2];
      if (!ep) break;
      const v = await apiGet(sock, `/v1/bpf/policy?endpoint=${encodeURIComponent(ep)}`);
      print(argv, v, () =>
        table(
          ['DIRECTION', 'IDENTITY', 'PROTO', 'PORTS', 'VERDICT', 'PROXY PORT'],
          rows(v, 'entries').map((e) => [e.direction, e.identity, e.protocol, e.ports, e.verdict, e.proxyPort]),
        ),
      );
      return 0;
    }
    case 'proxy': {
      if (sub === 'routing' && (arg === 'remove' || arg === 'ensure')) {
        // Local, no agent needed: the fwmark rule and local route that deliver redirected flows to Envoy.
        const { ensurePolicyRouting, removePolicyRouting } = await import('../proxy/policy-routing.js');
        await (arg === 'remove' ? removePolicyRouting() : ensurePolicyRouting());
        return 0;
      }
      if (sub !== 'list') break;
      const v = await apiGet(sock, '/v1/proxy');
      print(argv, v, () =>
        table(
          ['LISTENER', 'PORT', 'ENDPOINTS', 'ACKED VERSION'],
          rows(v, 'listeners').map((l) => [l.name, l.port, (l.endpoints as string[] | undefined)?.join(','), l.ackedVersion]),
        ),
      );
      return 0;
    }
  }
  process.stderr.write(`meshd ${cmd}: unknown or incomplete subcommand; see "meshd help"\n`);
  return 2;
}
