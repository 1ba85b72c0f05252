/**
 * `meshd observe`: flows from a node's Hubble observer API (or a relay), with
 * the filters and output forms of `hubble observe`.
 *
 *   meshd observe [--server unix://PATH|HOST:PORT] [--namespace NS] [--pod [NS/]POD] [--from-pod …] [--to-pod …]
 *                 [--label SEL] [--verdict V] [--protocol P] [--port N] [--to-port N] [--http-status C]
 *                 [--http-method M] [--http-path RE] [--type T] [--since T] [--until T] [--last N | --first N] [-f]
 *                 [-o compact|table|json|jsonpb]
 *
 * Filters given for "either side" (--namespace, --pod, --label, --ip, --port, --identity) make two
 * whitelist filters, one with them on the source and one on the destination, as the hubble CLI does;
 * everything else applies to both.
 */
import * as grpc from '@grpc/grpc-js';
import { parseFlowsResponse } from '../observe/flow-schema.js';
import { compactLine, protoJson, TABLE_HEADERS, tableRow } from '../observe/flow-format.js';
import { timestampFromNs } from '../observe/flow.js';
import { HUBBLE_CHANNEL_OPTIONS, loadHubbleProtos } from '../observe/protos.js';
import { MeshdError } from '../util/errors.js';
import { command, UsageError, type CliIo, type ParsedArgs } from './args.js';
import { toJsonValue } from './output.js';

export const DEFAULT_HUBBLE_SERVER = 'unix:///var/run/meshd/hubble.sock';
const OUTPUTS = ['compact', 'table', 'json', 'jsonpb'] as const;
type ObserveOutput = (typeof OUTPUTS)[number];

export class ObserveUnavailableError extends MeshdError {
  constructor(message: string, cause?: unknown) {
    super('MESHD_OBSERVE_UNAVAILABLE', message, { kind: 'unavailable', cause });
  }
}

const str = (help: string, value = 'VALUE') => ({ type: 'string', multiple: true, value, help }) as const;
const options = {
  server: { type: 'string', value: 'ADDR', help: `the observer: unix://PATH or HOST:PORT (default $HUBBLE_SERVER or ${DEFAULT_HUBBLE_SERVER})` },
  namespace: str('flows from or to pods of this namespace', 'NS'),
  pod: str('flows from or to this pod ([NS/]NAME-PREFIX)', 'POD'),
  'from-pod': str('flows from this pod', 'POD'),
  'to-pod': str('flows to this pod', 'POD'),
  label: str('flows from or to endpoints with these labels (selector, e.g. "k8s:app=web,tier!=db")', 'SEL'),
  'from-label': str('flows from endpoints with these labels', 'SEL'),
  'to-label': str('flows to endpoints with these labels', 'SEL'),
  ip: str('flows from or to this address or IPv4 CIDR', 'IP'),
  'from-ip': str('flows from this address or IPv4 CIDR', 'IP'),
  'to-ip': str('flows to this address or IPv4 CIDR', 'IP'),
  identity: str('flows from or to this security identity', 'ID'),
  verdict: str('FORWARDED, DROPPED, ERROR, AUDIT, REDIRECTED', 'V'),
  protocol: str('tcp, udp, sctp, icmp, icmpv4, icmpv6, http, dns, kafka', 'P'),
  port: str('flows from or to this port', 'N'),
  'from-port': str('flows from this port', 'N'),
  'to-port': str('flows to this port', 'N'),
  'http-status': str('HTTP status code, or a prefix such as 5+', 'CODE'),
  'http-method': str('HTTP method', 'M'),
  'http-path': str('HTTP path (regular expression)', 'RE'),
  type: str('event type: drop, policy-verdict, trace, l7', 'T'),
  'traffic-direction': str('ingress or egress', 'DIR'),
  node: str('flows seen on this node (a trailing * matches a prefix)', 'NAME'),
  since: { type: 'string', value: 'T', help: 'flows since T (RFC 3339, or a duration ago such as 5m, 1h30m)' },
  until: { type: 'string', value: 'T', help: 'flows until T (RFC 3339, or a duration ago)' },
  last: { type: 'string', value: 'N', help: 'the last N flows (default 20 unless -f or --since)' },
  first: { type: 'string', value: 'N', help: 'the first N flows in the store' },
  follow: { type: 'boolean', short: 'f', help: 'keep printing flows as they happen' },
  output: { type: 'string', short: 'o', value: 'FORMAT', help: `output: ${OUTPUTS.join(', ')} (default compact)` },
} as const;

type Args = ParsedArgs<typeof options>;

const EVENT_TYPES: Record<string, number> = { drop: 1, trace: 4, 'policy-verdict': 5, l7: 129 };

/** "5m", "1h30m", "500ms" ago, or an RFC 3339 time → wall-clock ns. */
export function parseTime(s: string, flag: string, nowMs = Date.now()): bigint {
  if (/^(\d+(ms|s|m|h))+$/.test(s)) {
    const ms = [...s.matchAll(/(\d+)(ms|s|m|h)/g)].reduce((acc, [, n, u]) => acc + Number(n) * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[u ?? 's'] ?? 1), 0);
    return BigInt(nowMs - ms) * 1_000_000n;
  }
  const t = Date.parse(s);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(s) || !Number.isFinite(t)) throw new UsageError(`meshd observe: ${flag} takes an RFC 3339 time or a duration such as 5m, not "${s}"`);
  return BigInt(t) * 1_000_000n;
}

function count(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`meshd observe: ${flag} takes a positive integer, not "${v}"`);
  return Number(v);
}

/** The GetFlows request the flags describe. */
export function buildRequest(args: Args, nowMs = Date.now()): Record<string, unknown> {
  const common: Record<string, unknown[]> = {};
  const add = (k: string, vs: unknown[]) => {
    if (vs.length > 0) common[k] = [...(common[k] ?? []), ...vs];
  };
  add('source_pod', args.strings('from-pod'));
  add('destination_pod', args.strings('to-pod'));
  add('source_label', args.strings('from-label'));
  add('destination_label', args.strings('to-label'));
  add('source_ip', args.strings('from-ip'));
  add('destination_ip', args.strings('to-ip'));
  add('source_port', args.strings('from-port'));
  add('destination_port', args.strings('to-port'));
  add('verdict', args.strings('verdict').map((v) => v.toUpperCase()));
  add('protocol', args.strings('protocol').map((p) => p.toLowerCase()));
  add('http_status_code', args.strings('http-status'));
  add('http_method', args.strings('http-method'));
  add('http_path', args.strings('http-path'));
  add('node_name', args.strings('node'));
  add('traffic_direction', args.strings('traffic-direction').map((d) => d.toUpperCase()));
  add(
    'event_type',
    args.strings('type').map((t) => {
      const n = EVENT_TYPES[t.toLowerCase()];
      if (n === undefined) throw new UsageError(`meshd observe: --type takes ${Object.keys(EVENT_TYPES).join(', ')}, not "${t}"`);
      return { type: n };
    }),
  );
  const identities = (vs: string[]) =>
    vs.map((v) => {
      if (!/^\d+$/.test(v)) throw new UsageError(`meshd observe: --identity takes a number, not "${v}"`);
      return Number(v);
    });
  // Either-side criteria: the same set on the source in one filter, on the destination in the other.
  const either = {
    pod: [...args.strings('namespace').map((ns) => `${ns}/`), ...args.strings('pod')],
    label: args.strings('label'),
    ip: args.strings('ip'),
    port: args.strings('port'),
    identity: identities(args.strings('identity')),
  };
  const side = (s: 'source' | 'destination') => {
    const f: Record<string, unknown[]> = { ...common };
    const put = (k: string, vs: unknown[]) => {
      if (vs.length > 0) f[`${s}_${k}`] = [...(f[`${s}_${k}`] ?? []), ...vs];
    };
    put('pod', either.pod);
    put('label', either.label);
    put('ip', either.ip);
    put('port', either.port);
    put('identity', either.identity);
    return f;
  };
  const hasEither = Object.values(either).some((v) => v.length > 0);
  const whitelist = hasEither ? [side('source'), side('destination')] : Object.keys(common).length > 0 ? [common] : [];

  const follow = args.flag('follow');
  const last = count(args.string('last'), '--last');
  const first = count(args.string('first'), '--first');
  if (last !== undefined && first !== undefined) throw new UsageError('meshd observe: --last and --first exclude each other');
  const since = args.string('since');
  const until = args.string('until');
  const req: Record<string, unknown> = { whitelist, blacklist: [], follow };
  if (first !== undefined) {
    req.first = true;
    req.number = String(first);
  } else if (last !== undefined) req.number = String(last);
  else if (!follow && since === undefined) req.number = '20';
  if (since !== undefined) req.since = timestampFromNs(parseTime(since, '--since', nowMs));
  if (until !== undefined) req.until = timestampFromNs(parseTime(until, '--until', nowMs));
  return req;
}

/** A GetFlowsResponse's oneof case as proto-loader decodes it ("flow", "lost_events", …), or undefined. */
function responseKind(msg: unknown): string | undefined {
  if (typeof msg !== 'object' || msg === null) return undefined;
  const k: unknown = Reflect.get(msg, 'response_types');
  return typeof k === 'string' ? k : undefined;
}

/** unix://PATH and HOST:PORT as grpc-js takes them. */
export function grpcTarget(server: string): string {
  if (server.startsWith('unix://')) return `unix:${server.slice('unix://'.length)}`;
  return server.replace(/^(dns|ipv4|ipv6):\/\//, '');
}

export const observe = command(
  {
    name: 'observe',
    summary: 'flows from the node observer (Hubble API) or a relay, with hubble observe\'s filters and output forms',
    options,
    notes: ['Either-side filters (--namespace, --pod, --label, --ip, --port, --identity) match the source or the destination.'],
  },
  (args, io) => run(args, io),
);

async function run(args: Args, io: CliIo): Promise<number> {
  const out = args.string('output') ?? 'compact';
  const format = OUTPUTS.find((o): o is ObserveOutput => o === out);
  if (!format) throw new UsageError(`meshd observe: -o takes ${OUTPUTS.join(', ')}, not "${out}"`);
  const request = buildRequest(args);
  const server = args.string('server') ?? process.env.HUBBLE_SERVER ?? DEFAULT_HUBBLE_SERVER;
  const { Observer } = loadHubbleProtos();
  const client = new Observer(grpcTarget(server), grpc.credentials.createInsecure(), HUBBLE_CHANNEL_OPTIONS);
  const rows: string[][] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const getFlows = client.getFlows;
      if (typeof getFlows !== 'function') throw new ObserveUnavailableError('observer.Observer has no GetFlows in the loaded protos');
      const call: grpc.ClientReadableStream<unknown> = getFlows.call(client, request);
      const onSigint = () => call.cancel();
      process.once('SIGINT', onSigint);
      // Lines are written once per event-loop turn, not once per flow: a follower printing 100,000
      // flows/s spends its time on flows, not on write calls.
      let pending = '';
      const print = (line: string) => {
        if (pending === '') setImmediate(flush);
        pending += line;
      };
      const flush = () => {
        if (pending === '') return;
        const text = pending;
        pending = '';
        io.out(text);
      };
      const json = format === 'jsonpb' || format === 'json';
      call.on('data', (msg: unknown) => {
        // -o json prints the response as the server sent it: only its kind is read here, and a flow
        // is not validated field by field (nothing of it is interpreted).
        if (json && responseKind(msg) === 'flow') {
          print(`${JSON.stringify(protoJson(msg))}\n`);
          return;
        }
        const r = parseFlowsResponse(msg);
        if (r.kind === 'lost') {
          flush();
          io.err(`EVENTS LOST: ${r.lost.source} ${r.lost.num_events_lost}\n`);
          if (json) print(`${JSON.stringify(protoJson(toJsonValue(r.raw)))}\n`);
          return;
        }
        if (r.kind !== 'flow') return;
        switch (format) {
          case 'compact':
            print(`${compactLine(r.flow)}\n`);
            break;
          case 'table':
            if (args.flag('follow')) print(`${tableRow(r.flow).join('  ')}\n`);
            else rows.push(tableRow(r.flow));
            break;
          case 'json': // an alias for jsonpb, as in the hubble CLI of the pinned version
          case 'jsonpb':
            print(`${JSON.stringify(protoJson(toJsonValue(r.raw)))}\n`);
            break;
        }
      });
      call.on('end', () => {
        process.off('SIGINT', onSigint);
        flush();
        resolve();
      });
      call.on('error', (e: grpc.ServiceError) => {
        process.off('SIGINT', onSigint);
        flush();
        if (e.code === grpc.status.CANCELLED) resolve();
        else if (e.code === grpc.status.INVALID_ARGUMENT) reject(new UsageError(`meshd observe: ${e.details}`));
        else reject(new ObserveUnavailableError(`meshd observe: ${server}: ${e.details || e.message}`, e));
      });
    });
  } finally {
    client.close();
  }
  if (format === 'table' && rows.length > 0) {
    const widths = TABLE_HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ');
    io.out(`${[line(TABLE_HEADERS), ...rows.map(line)].join('\n')}\n`);
  }
  return 0;
}
