/**
 * `meshd datapath`: what the endpoint datapath holds and does, read from the
 * pinned maps (works whether or not an agent is running; needs root).
 *
 *   meshd datapath status [--pin-dir /sys/fs/bpf/meshd] [-o json|yaml]
 *   meshd datapath flows  [--pin-dir DIR] [--count N] [-o json|yaml]   (drops, verdicts, redirects as they happen)
 */
import { join } from 'node:path';
import { BpfMap, native } from '../../native/index.js';
import { decodeFlowEvent, type FlowRecord } from '../datapath/endpoint/flow-events.js';
import { readMetrics } from '../datapath/endpoint/datapath-metrics.js';
import { prefixFromKey } from '../datapath/endpoint/ipcache.js';
import { ConfigFlag, DatapathConfig, EndpointFlag, EndpointValue, IpcacheValue, PolicyKey } from '../datapath/maps.js';
import { DEFAULT_PIN_DIR } from '../datapath/lb/sock-lb.js';
import { FlowRecordSchema } from '../api/flow.js';
import { MeshdError } from '../util/errors.js';
import { command, UsageError, type CliIo, type CommandGroup, type ParsedArgs } from './args.js';
import { pinDirOption } from './lb.js';

export class DatapathMapsUnreadableError extends MeshdError {
  constructor(pinDir: string, cause: unknown) {
    super('MESHD_DATAPATH_MAPS_UNREADABLE', `cannot read the datapath maps under ${pinDir}: ${cause instanceof Error ? cause.message : String(cause)}`, { kind: 'failed', cause });
  }
}

export interface DatapathStatus {
  endpoints: Array<{ ifindex: number; epId: number; identity: number; defaultDenyIngress: boolean; defaultDenyEgress: boolean; policyGeneration: number; policyEntries: number }>;
  ipcache: { prefixes: number; addresses: number; sample: Array<{ prefix: string; identity: number }> };
  conntrackEntries: number;
  metrics: { drops: Array<{ direction: string; reason: string; packets: string }>; newConnections: Record<'ingress' | 'egress', { allowed: string; redirected: string }> };
  config: { proxyMark: string; verdictSample: number; perPacketLb: boolean; sockmapShortcut: boolean; policyAuditMode: boolean; tunnel: boolean; hostFirewall: boolean; ipcacheGeneration: number };
}

export function readStatus(pinDir: string): DatapathStatus {
  const open = (name: string) => BpfMap.fromPin(join(pinDir, name));
  const names = ['meshd_endpoints', 'meshd_policy', 'meshd_pol_exact', 'meshd_ipcache', 'meshd_ipc_host', 'meshd_ct', 'meshd_config', 'meshd_metrics'] as const;
  const maps = new Map<string, BpfMap>();
  try {
    for (const n of names) maps.set(n, open(n));
    const get = (n: (typeof names)[number]): BpfMap => {
      const m = maps.get(n);
      if (!m) throw new Error(`${n} not open`);
      return m;
    };
    const perEp = new Map<number, number>();
    for (const n of ['meshd_policy', 'meshd_pol_exact'] as const) {
      for (const [k] of get(n).dump()) {
        const ep = PolicyKey.decode(k).ep_id;
        perEp.set(ep, (perEp.get(ep) ?? 0) + 1);
      }
    }
    const endpoints = get('meshd_endpoints')
      .dump()
      .map(([k, v]) => {
        const e = EndpointValue.decode(v);
        return {
          ifindex: k.readUInt32LE(0),
          epId: e.ep_id,
          identity: e.identity,
          defaultDenyIngress: (e.flags & EndpointFlag.DEFAULT_DENY_INGRESS) !== 0,
          defaultDenyEgress: (e.flags & EndpointFlag.DEFAULT_DENY_EGRESS) !== 0,
          policyGeneration: e.policy_gen,
          policyEntries: perEp.get(e.ep_id) ?? 0,
        };
      })
      .sort((a, b) => a.epId - b.epId);
    const prefixes = get('meshd_ipcache').dump();
    const addresses = get('meshd_ipc_host').dump();
    const sample = [...prefixes, ...addresses].slice(0, 20).map(([k, v]) => ({ prefix: prefixFromKey(k).cidr, identity: IpcacheValue.decode(v).identity }));
    const raw = get('meshd_config').lookup(Buffer.alloc(4));
    const c = raw ? DatapathConfig.decode(raw) : DatapathConfig.zero();
    const m = readMetrics(get('meshd_metrics').fd);
    const str = (x: { allowed: bigint; redirected: bigint }) => ({ allowed: x.allowed.toString(), redirected: x.redirected.toString() });
    let ct = 0;
    for (let k = get('meshd_ct').nextKey(null); k; k = get('meshd_ct').nextKey(k)) ct += 1;
    return {
      endpoints,
      ipcache: { prefixes: prefixes.length, addresses: addresses.length, sample },
      conntrackEntries: ct,
      metrics: {
        drops: m.drops.map((d) => ({ ...d, packets: d.packets.toString() })),
        newConnections: { ingress: str(m.newConnections.ingress), egress: str(m.newConnections.egress) },
      },
      config: {
        proxyMark: `0x${c.proxy_mark.toString(16)}/0x${c.proxy_mark_mask.toString(16)}`,
        verdictSample: c.verdict_sample,
        perPacketLb: (c.flags & ConfigFlag.PER_PACKET_LB) !== 0,
        sockmapShortcut: (c.flags & ConfigFlag.SOCKMAP_SHORTCUT) !== 0,
        policyAuditMode: (c.flags & ConfigFlag.POLICY_AUDIT) !== 0,
        tunnel: (c.flags & ConfigFlag.TUNNEL) !== 0,
        hostFirewall: (c.flags & ConfigFlag.HOST_FIREWALL) !== 0,
        ipcacheGeneration: c.ipcache_gen,
      },
    };
  } finally {
    for (const m of maps.values()) m.close();
  }
}

function formatFlow(f: FlowRecord): string {
  const what = f.type === 'drop' ? `DROP ${f.dropReason ?? ''}` : f.type === 'audit' ? `AUDIT ${f.dropReason ?? ''}` : f.type === 'redirect' ? `REDIRECT proxy:${f.proxyPort ?? 0}` : (f.verdict ?? '');
  const host = (ip: string) => (ip.includes(':') ? `[${ip}]` : ip);
  return `${f.direction.padEnd(7)} ep ${f.endpointNumericId} ${host(f.src.ip)}:${f.src.port} (${f.srcIdentity}) -> ${host(f.dst.ip)}:${f.dst.port} (${f.dstIdentity}) proto ${f.protocol} ${what}`;
}

async function streamFlows(args: ParsedArgs<typeof flowsOptions>, pinDir: string, io: CliIo): Promise<number> {
  const countArg = args.string('count');
  const count = countArg === undefined ? undefined : Number(countArg);
  if (count !== undefined && !(Number.isInteger(count) && count > 0)) throw new UsageError(`meshd datapath flows: --count takes a positive integer, not "${countArg}"`);
  let fd: number;
  try {
    fd = native.objGet(join(pinDir, 'meshd_events'));
  } catch (e) {
    throw new DatapathMapsUnreadableError(pinDir, e);
  }
  let seen = 0;
  return new Promise<number>((resolve) => {
    const done = (code: number) => {
      reader.close();
      native.closeFd(fd);
      process.off('SIGINT', onSigint);
      resolve(code);
    };
    const onSigint = () => done(0);
    const reader = new native.RingBufferReader(fd, (bufs) => {
      for (const b of bufs) {
        let f: FlowRecord;
        try {
          f = decodeFlowEvent(b);
        } catch (e) {
          // One malformed event is reported and skipped; the stream goes on.
          io.err(`meshd datapath flows: ${e instanceof Error ? e.message : String(e)}\n`);
          continue;
        }
        io.out(args.format(FlowRecordSchema.parse(f), () => formatFlow(f)));
        seen += 1;
        if (count !== undefined && seen >= count) return done(0);
      }
    });
    process.on('SIGINT', onSigint);
  });
}

function formatStatus(st: DatapathStatus): string {
  const c = st.config;
  const nc = st.metrics.newConnections;
  return [
    `config: proxy mark ${c.proxyMark}, verdict sample ${c.verdictSample}, per-packet LB ${c.perPacketLb ? 'on' : 'off'}, sockmap short-circuit ${c.sockmapShortcut ? 'on' : 'off'}, policy audit mode ${c.policyAuditMode ? 'on' : 'off'}, tunnel ${c.tunnel ? 'on' : 'off'}, host firewall ${c.hostFirewall ? 'on' : 'off'}`,
    `ipcache: ${st.ipcache.addresses} addresses, ${st.ipcache.prefixes} prefixes; conntrack: ${st.conntrackEntries} entries`,
    `new connections: egress ${nc.egress.allowed} allowed, ${nc.egress.redirected} to the proxy; ingress ${nc.ingress.allowed} allowed, ${nc.ingress.redirected} to the proxy`,
    ...st.metrics.drops.map((d) => `dropped ${d.direction} ${d.reason}: ${d.packets}`),
    ...st.endpoints.map((e) => {
      const dd = [e.defaultDenyIngress ? 'ingress' : '', e.defaultDenyEgress ? 'egress' : ''].filter(Boolean).join('+') || 'none';
      return `endpoint ${e.epId} (ifindex ${e.ifindex}, identity ${e.identity}): ${e.policyEntries} policy entries, default deny ${dd}, generation ${e.policyGeneration}`;
    }),
  ].join('\n');
}

const flowsOptions = {
  'pin-dir': pinDirOption,
  count: { type: 'string', value: 'N', help: 'stop after N events (default: until interrupted)' },
} as const;

export const datapath: CommandGroup = {
  name: 'datapath',
  summary: 'the endpoint datapath, read from its pinned maps (with or without a running agent; needs root)',
  subcommands: [
    command(
      { name: 'datapath status', summary: 'endpoints, policy and ipcache sizes, conntrack, counters and config of the endpoint datapath', options: { 'pin-dir': pinDirOption }, output: true },
      (args, io) => {
        const pinDir = args.string('pin-dir') ?? DEFAULT_PIN_DIR;
        let st: DatapathStatus;
        try {
          st = readStatus(pinDir);
        } catch (e) {
          throw new DatapathMapsUnreadableError(pinDir, e);
        }
        io.out(args.format(st, () => formatStatus(st)));
        return 0;
      },
    ),
    command(
      { name: 'datapath flows', summary: 'drops, verdicts and proxy redirects as they happen (one per line; -o json|yaml: one record each)', options: flowsOptions, output: true },
      (args, io) => streamFlows(args, args.string('pin-dir') ?? DEFAULT_PIN_DIR, io),
    ),
  ],
};
