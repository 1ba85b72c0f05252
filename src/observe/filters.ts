/**
 * Hubble's FlowFilter (api/v1/flow) as small composable predicates, with
 * Hubble's semantics: inside one filter every field that is set must match
 * (a field matches when any of its values does); a flow passes a request
 * when it matches some whitelist filter (or there is none) and no blacklist
 * filter.
 *
 *   const keep = compileFilters(request.whitelist, request.blacklist);   // throws FlowFilterError
 *   flows.filter(keep);
 *
 * A filter field meshd cannot evaluate is refused (MESHD_OBSERVE_FILTER_INVALID),
 * never ignored: an ignored filter would show flows the operator excluded.
 */
import { z } from 'zod';
import { MeshdError } from '../util/errors.js';
import { flowPorts, type Flow } from './flow.js';

export class FlowFilterError extends MeshdError {
  constructor(message: string) {
    super('MESHD_OBSERVE_FILTER_INVALID', message, { kind: 'invalid' });
  }
}

const strs = z.array(z.string()).optional();
const workload = z.array(z.object({ name: z.string().optional(), kind: z.string().optional() })).optional();

/** The FlowFilter fields meshd evaluates, as proto-loader decodes them (keepCase, enums by name). */
export const FlowFilterSchema = z.object({
  uuid: strs,
  source_ip: strs,
  destination_ip: strs,
  source_pod: strs,
  destination_pod: strs,
  source_label: strs,
  destination_label: strs,
  source_service: strs,
  destination_service: strs,
  source_workload: workload,
  destination_workload: workload,
  traffic_direction: z.array(z.string()).optional(),
  verdict: z.array(z.string()).optional(),
  drop_reason_desc: z.array(z.string()).optional(),
  event_type: z.array(z.object({ type: z.number().optional(), match_sub_type: z.boolean().optional(), sub_type: z.number().optional() })).optional(),
  http_status_code: strs,
  protocol: strs,
  source_port: strs,
  destination_port: strs,
  reply: z.array(z.boolean()).optional(),
  dns_query: strs,
  source_identity: z.array(z.number()).optional(),
  destination_identity: z.array(z.number()).optional(),
  http_method: strs,
  http_path: strs,
  http_url: strs,
  tcp_flags: z.array(z.record(z.string(), z.boolean())).optional(),
  node_name: strs,
  ip_version: z.array(z.string()).optional(),
});
export type FlowFilter = z.output<typeof FlowFilterSchema>;

type Pred = (f: Flow) => boolean;

/** Parses one filter from the wire; names the first field meshd does not evaluate. */
export function parseFlowFilter(raw: unknown, where: string): FlowFilter {
  if (typeof raw === 'object' && raw !== null) {
    const known = new Set(Object.keys(FlowFilterSchema.shape));
    for (const [k, v] of Object.entries(raw)) {
      const empty = v === undefined || v === null || (Array.isArray(v) && v.length === 0);
      if (!known.has(k) && !empty) throw new FlowFilterError(`${where}.${k}: this filter field is not supported by meshd`);
    }
  }
  const r = FlowFilterSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FlowFilterError(`${where}.${(i?.path ?? []).map(String).join('.')}: ${i?.message ?? 'invalid'}`);
  }
  return r.data;
}

/** "ns/prefix", "ns/" or "prefix" (any namespace), as Hubble's pod and service filters take them. */
function byNamespacedName(values: string[], get: (f: Flow) => { ns?: string | undefined; name?: string | undefined } | undefined, field: string): Pred {
  const parsed = values.map((v) => {
    if (v === '') throw new FlowFilterError(`${field}: a name must not be empty`);
    const i = v.indexOf('/');
    return i < 0 ? { ns: '', prefix: v } : { ns: v.slice(0, i), prefix: v.slice(i + 1) };
  });
  return (f) => {
    const x = get(f);
    const ns = x?.ns ?? '';
    const name = x?.name ?? '';
    if (ns === '' && name === '') return false;
    return parsed.some((p) => (p.prefix === '' || name.startsWith(p.prefix)) && (p.ns === '' || p.ns === ns));
  };
}

function ipv4ToInt(ip: string): number | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return (((parts[0] ?? 0) << 24) | ((parts[1] ?? 0) << 16) | ((parts[2] ?? 0) << 8) | (parts[3] ?? 0)) >>> 0;
}

/** An address or a CIDR (IPv4 CIDRs; IPv6 exact). */
function byIp(values: string[], get: (f: Flow) => string | undefined, field: string): Pred {
  const tests = values.map((v): ((ip: string) => boolean) => {
    const slash = v.indexOf('/');
    if (slash < 0) return (ip) => ip === v;
    const base = ipv4ToInt(v.slice(0, slash));
    const bits = Number(v.slice(slash + 1));
    if (base === undefined || !Number.isInteger(bits) || bits < 0 || bits > 32) throw new FlowFilterError(`${field}: "${v}" is not an IPv4 CIDR`);
    const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
    return (ip) => {
      const n = ipv4ToInt(ip);
      return n !== undefined && ((n & mask) >>> 0) === ((base & mask) >>> 0);
    };
  });
  return (f) => {
    const ip = get(f);
    return ip !== undefined && ip !== '' && tests.some((t) => t(ip));
  };
}

/**
 * A label selector as Hubble takes it: comma-separated requirements `key=value`, `key!=value`,
 * `key` (present) and `!key` (absent); a key may name its source (`k8s:app`), otherwise any source matches.
 */
function byLabels(values: string[], get: (f: Flow) => string[], field: string): Pred {
  const selectors = values.map((sel) => {
    const reqs = sel.split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (reqs.length === 0) throw new FlowFilterError(`${field}: empty label selector`);
    return reqs.map((r) => {
      const m = /^(!?)([A-Za-z0-9_.\-/:]+?)(?:(!=|==|=)(.*))?$/.exec(r);
      if (!m) throw new FlowFilterError(`${field}: cannot parse label requirement "${r}"`);
      const negate = m[1] === '!';
      const rawKey = m[2] ?? '';
      const op = m[3];
      const value = m[4] ?? '';
      if (negate && op) throw new FlowFilterError(`${field}: "!" takes a key only, not "${r}"`);
      const colon = rawKey.indexOf(':');
      const source = colon > 0 ? rawKey.slice(0, colon) : 'any';
      const key = colon > 0 ? rawKey.slice(colon + 1) : rawKey;
      const valuesOf = (labels: string[]) =>
        labels.flatMap((l) => {
          const c = l.indexOf(':');
          const ls = l.slice(0, c);
          const rest = l.slice(c + 1);
          const eq = rest.indexOf('=');
          const lk = eq < 0 ? rest : rest.slice(0, eq);
          const lv = eq < 0 ? '' : rest.slice(eq + 1);
          return lk === key && (source === 'any' || source === ls) ? [lv] : [];
        });
      return (labels: string[]): boolean => {
        const vs = valuesOf(labels);
        if (negate) return vs.length === 0;
        if (!op) return vs.length > 0;
        return op === '!=' ? !vs.includes(value) : vs.includes(value);
      };
    });
  });
  return (f) => {
    const labels = get(f);
    return selectors.some((reqs) => reqs.every((r) => r(labels)));
  };
}

function regexes(values: string[], field: string): RegExp[] {
  return values.map((v) => {
    try {
      return new RegExp(v);
    } catch {
      throw new FlowFilterError(`${field}: "${v}" is not a valid regular expression`);
    }
  });
}

const L4_PROTOCOLS = ['icmp', 'icmpv4', 'icmpv6', 'tcp', 'udp', 'sctp'];
const L7_PROTOCOLS = ['http', 'dns', 'kafka'];

function protocolMatches(f: Flow, p: string): boolean {
  switch (p) {
    case 'icmp':
      return f.l4?.protocol === 'ICMPv4' || f.l4?.protocol === 'ICMPv6';
    case 'icmpv4':
      return f.l4?.protocol === 'ICMPv4';
    case 'icmpv6':
      return f.l4?.protocol === 'ICMPv6';
    case 'tcp':
      return f.l4?.protocol === 'TCP';
    case 'udp':
      return f.l4?.protocol === 'UDP';
    case 'sctp':
      return f.l4?.protocol === 'SCTP';
    default:
      return f.l7?.record === p;
  }
}

/** One FlowFilter → one predicate (all of its set fields must match). */
export function compileFilter(ff: FlowFilter, where = 'filter'): Pred {
  const preds: Pred[] = [];
  const has = <T>(v: T[] | undefined): v is T[] => v !== undefined && v.length > 0;
  const field = (name: string) => `${where}.${name}`;

  if (has(ff.uuid)) {
    const set = new Set(ff.uuid);
    preds.push((f) => set.has(f.uuid));
  }
  if (has(ff.source_ip)) preds.push(byIp(ff.source_ip, (f) => f.IP?.source, field('source_ip')));
  if (has(ff.destination_ip)) preds.push(byIp(ff.destination_ip, (f) => f.IP?.destination, field('destination_ip')));
  if (has(ff.source_pod)) preds.push(byNamespacedName(ff.source_pod, (f) => ({ ns: f.source.namespace, name: f.source.pod_name }), field('source_pod')));
  if (has(ff.destination_pod)) preds.push(byNamespacedName(ff.destination_pod, (f) => ({ ns: f.destination.namespace, name: f.destination.pod_name }), field('destination_pod')));
  if (has(ff.source_service)) preds.push(byNamespacedName(ff.source_service, (f) => ({ ns: f.source_service?.namespace, name: f.source_service?.name }), field('source_service')));
  if (has(ff.destination_service)) preds.push(byNamespacedName(ff.destination_service, (f) => ({ ns: f.destination_service?.namespace, name: f.destination_service?.name }), field('destination_service')));
  if (has(ff.source_label)) preds.push(byLabels(ff.source_label, (f) => f.source.labels, field('source_label')));
  if (has(ff.destination_label)) preds.push(byLabels(ff.destination_label, (f) => f.destination.labels, field('destination_label')));
  for (const side of ['source', 'destination'] as const) {
    const ws = ff[`${side}_workload`];
    if (has(ws)) preds.push((f) => (f[side].workloads ?? []).some((w) => ws.some((x) => (!x.name || x.name === w.name) && (!x.kind || x.kind === w.kind))));
  }
  if (has(ff.traffic_direction)) {
    const set = new Set(ff.traffic_direction);
    preds.push((f) => set.has(f.traffic_direction));
  }
  if (has(ff.verdict)) {
    const set = new Set(ff.verdict);
    preds.push((f) => set.has(f.verdict));
  }
  if (has(ff.drop_reason_desc)) {
    const set = new Set(ff.drop_reason_desc);
    preds.push((f) => f.drop_reason_desc !== undefined && set.has(f.drop_reason_desc));
  }
  if (has(ff.event_type)) {
    const types = ff.event_type;
    preds.push((f) => types.some((t) => (t.type ?? 0) === f.event_type.type && (!t.match_sub_type || (t.sub_type ?? 0) === f.event_type.sub_type)));
  }
  if (has(ff.protocol)) {
    const ps = ff.protocol.map((p) => p.toLowerCase());
    for (const p of ps) if (!L4_PROTOCOLS.includes(p) && !L7_PROTOCOLS.includes(p)) throw new FlowFilterError(`${field('protocol')}: unknown protocol "${p}"`);
    preds.push((f) => ps.some((p) => protocolMatches(f, p)));
  }
  for (const [name, side] of [['source_port', 'source'], ['destination_port', 'destination']] as const) {
    const vs = ff[name];
    if (!has(vs)) continue;
    const ports = vs.map((v) => {
      const n = Number(v);
      if (!/^\d+$/.test(v) || n > 65535) throw new FlowFilterError(`${field(name)}: "${v}" is not a port`);
      return n;
    });
    preds.push((f) => {
      const p = flowPorts(f);
      return p !== undefined && ports.includes(p[side]);
    });
  }
  if (has(ff.reply)) {
    const want = ff.reply;
    preds.push((f) => want.includes(f.is_reply?.value ?? false));
  }
  if (has(ff.source_identity)) {
    const set = new Set(ff.source_identity);
    preds.push((f) => set.has(f.source.identity));
  }
  if (has(ff.destination_identity)) {
    const set = new Set(ff.destination_identity);
    preds.push((f) => set.has(f.destination.identity));
  }
  if (has(ff.http_status_code)) {
    const full: string[] = [];
    const prefix: string[] = [];
    for (const s of ff.http_status_code) {
      if (/^[1-5][0-9]{2}$/.test(s)) full.push(s);
      else if (/^[1-5][0-9]?\+$/.test(s)) prefix.push(s.slice(0, -1));
      else throw new FlowFilterError(`${field('http_status_code')}: "${s}" is neither a status code nor a prefix such as "5+"`);
    }
    preds.push((f) => {
      if (f.l7?.record !== 'http' || f.l7.http.code === 0) return false;
      const c = String(f.l7.http.code);
      return full.includes(c) || prefix.some((p) => c.startsWith(p));
    });
  }
  if (has(ff.http_method)) {
    const ms = ff.http_method.map((m) => m.toUpperCase());
    preds.push((f) => f.l7?.record === 'http' && ms.includes(f.l7.http.method.toUpperCase()));
  }
  if (has(ff.http_path)) {
    const res = regexes(ff.http_path, field('http_path'));
    preds.push((f) => {
      if (f.l7?.record !== 'http') return false;
      let path: string;
      try {
        path = new URL(f.l7.http.url).pathname;
      } catch {
        return false;
      }
      return res.some((r) => r.test(path));
    });
  }
  if (has(ff.http_url)) {
    const res = regexes(ff.http_url, field('http_url'));
    preds.push((f) => f.l7?.record === 'http' && res.some((r) => r.test(f.l7?.record === 'http' ? f.l7.http.url : '')));
  }
  if (has(ff.dns_query)) {
    const res = regexes(ff.dns_query, field('dns_query'));
    preds.push((f) => f.l7?.record === 'dns' && res.some((r) => r.test(f.l7?.record === 'dns' ? f.l7.dns.query : '')));
  }
  if (has(ff.tcp_flags)) {
    const sets = ff.tcp_flags.map((fl) => Object.entries(fl).filter(([, v]) => v).map(([k]) => k));
    preds.push((f) => {
      const flags = f.l4?.protocol === 'TCP' ? f.l4.TCP.flags : undefined;
      if (!flags) return false;
      const rec: Record<string, boolean | undefined> = { ...flags };
      return sets.some((s) => s.every((k) => rec[k] === true));
    });
  }
  if (has(ff.node_name)) {
    const names = ff.node_name;
    preds.push((f) => names.some((n) => (n.endsWith('*') ? f.node_name.startsWith(n.slice(0, -1)) : f.node_name === n)));
  }
  if (has(ff.ip_version)) {
    const set = new Set(ff.ip_version);
    preds.push((f) => f.IP !== undefined && set.has(f.IP.ipVersion));
  }
  return (f) => {
    for (const p of preds) if (!p(f)) return false;
    return true;
  };
}

/** Whitelist/blacklist as a GetFlows request carries them (raw, from the wire) → one predicate. */
export function compileFilters(whitelist: readonly unknown[] = [], blacklist: readonly unknown[] = []): Pred {
  const white = whitelist.map((raw, i) => compileFilter(parseFlowFilter(raw, `whitelist[${i}]`), `whitelist[${i}]`));
  const black = blacklist.map((raw, i) => compileFilter(parseFlowFilter(raw, `blacklist[${i}]`), `blacklist[${i}]`));
  return (f) => (white.length === 0 || white.some((p) => p(f))) && !black.some((p) => p(f));
}
