/**
 * Offline trace: build an engine from a scenario (namespaces, endpoints,
 * nodes, services, resolved names, policies) and answer, for each flow, what
 * the engine decides — the same engine and the same lookup the agent uses.
 *
 *   const result = traceScenario(loadScenarioFile('scenario.yaml'));
 *   result.flows[0].verdict  // 'ALLOWED' | 'DENIED' | 'REDIRECTED'
 *
 * A flow is allowed only if the source's egress and the destination's
 * ingress both allow it; each side is enforced only for local endpoints
 * (pods, and the local node's host endpoint). A destination that is a
 * Service cluster IP is first translated to a backend, as socket LB does
 * before policy sees the connection.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { isIp } from '../identity/cidr.js';
import { MeshdError } from '../util/errors.js';
import { ReservedIdentity } from '../identity/reserved.js';
import { cidrGroupInput } from '../k8s/cilium-cidr-group.js';
import { loadPolicyDocuments } from './api/loader.js';
import { formatPath, PolicyValidationError } from './api/problem.js';
import type { PathSegment, PolicyProblem } from './api/problem.js';
import { MemoryDnsCache } from './dns-cache.js';
import { PolicyEngine } from './engine.js';
import { matchDnsSelector, matchHttp, matchKafka, matchTls } from './l7-match.js';
import type { DnsRequest, HttpRequest, KafkaRequest } from './l7-match.js';
import { lookupEntries } from './lookup.js';
import type { LookupResult } from './lookup.js';
import { Proto } from './types.js';
import type { Direction, L7Rules } from './types.js';

const labels = z.record(z.string(), z.string());
const ip = z.string().refine(isIp, { message: 'not an IP address' });
const protocol = z.enum(['TCP', 'UDP', 'SCTP', 'ICMP', 'ICMPv6', 'VRRP', 'IGMP', 'GRE', 'IPIP', 'IPV6', 'ESP', 'AH']);

const flowSchema = z.strictObject({
  name: z.string().optional(),
  src: z.string().min(1),
  dst: z.string().min(1),
  dport: z.number().int().min(0).max(65535).optional(),
  protocol: protocol.optional(),
  http: z
    .strictObject({ method: z.string().optional(), path: z.string().optional(), host: z.string().optional(), headers: labels.optional() })
    .optional(),
  kafka: z
    .strictObject({ apiKey: z.string(), apiVersion: z.union([z.string(), z.number()]).optional(), clientID: z.string().optional(), topic: z.string().optional(), transactionalID: z.string().nullable().optional() })
    .optional(),
  dns: z.strictObject({ name: z.string().min(1) }).optional(),
  /** A TLS connection: the SNI its ClientHello names (absent: a ClientHello without SNI). */
  tls: z.strictObject({ sni: z.string().min(1).optional() }).optional(),
  /** Used by scenario tests; trace itself ignores it unless asked to check. */
  expect: z
    .strictObject({
      verdict: z.enum(['ALLOWED', 'DENIED', 'REDIRECTED']),
      l4: z.enum(['ALLOWED', 'DENIED', 'REDIRECTED']).optional(),
      l7: z.enum(['ALLOWED', 'DENIED']).nullable().optional(),
      direction: z.enum(['egress', 'ingress', 'both']).nullable().optional(),
      policies: z.array(z.string()).optional(),
      /** The `log.value`s the flow's verdict carries (both directions), sorted. */
      log: z.array(z.string()).optional(),
    })
    .optional(),
});
export type TraceFlow = z.infer<typeof flowSchema>;

export const scenarioSchema = z.strictObject({
  description: z.string().optional(),
  config: z
    .strictObject({
      policyEnforcementMode: z.enum(['default', 'always', 'never']).optional(),
      allowLocalhost: z.enum(['auto', 'always', 'policy']).optional(),
    })
    .optional(),
  namespaces: z.array(z.strictObject({ name: z.string().min(1), labels: labels.optional() })).optional(),
  endpoints: z
    .array(
      z.strictObject({
        namespace: z.string().min(1),
        name: z.string().min(1),
        labels: labels.optional(),
        ips: z.array(ip).optional(),
        ports: z.array(z.strictObject({ name: z.string().min(1), port: z.number().int().min(1).max(65535), protocol: z.enum(['TCP', 'UDP', 'SCTP']).optional() })).optional(),
        serviceAccount: z.string().optional(),
        local: z.boolean().optional(),
      }),
    )
    .optional(),
  nodes: z
    .array(z.strictObject({ name: z.string().min(1), labels: labels.optional(), ips: z.array(ip).optional(), local: z.boolean().optional() }))
    .optional(),
  services: z
    .array(
      z.strictObject({
        namespace: z.string().min(1),
        name: z.string().min(1),
        labels: labels.optional(),
        selector: labels.optional(),
        clusterIPs: z.array(ip).optional(),
        endpoints: z.array(ip).optional(),
        ports: z
          .array(
            z.strictObject({
              name: z.string().optional(),
              port: z.number().int().min(1).max(65535),
              protocol: z.enum(['TCP', 'UDP', 'SCTP']).optional(),
              targetPort: z.union([z.number().int().min(1).max(65535), z.string()]).optional(),
            }),
          )
          .optional(),
      }),
    )
    .optional(),
  fqdns: z.record(z.string(), z.array(ip)).optional(),
  /** The local host's own addresses, as the agent learns them from the kernel: the host identity, with or without a local node. */
  hostAddresses: z.array(ip).optional(),
  /** Addresses of reserved identities (e.g. {kube-apiserver: [10.0.0.1]}). */
  reservedAddresses: z.partialRecord(z.enum(['health', 'init', 'kube-apiserver', 'ingress', 'unmanaged', 'world']), z.array(ip)).optional(),
  policies: z.array(z.unknown()).optional(),
  flows: z.array(flowSchema),
  /** Used by scenario tests: the policy problems the scenario expects (by field path and code). */
  expectProblems: z.array(z.strictObject({ path: z.string(), code: z.string() })).optional(),
});
export type Scenario = z.infer<typeof scenarioSchema>;

export interface LoadedScenario {
  scenario: Scenario;
  file?: string;
}

/** Parses and validates a scenario; throws PolicyValidationError naming the field path. Policies are checked later, one by one. */
export function parseScenario(text: string, file?: string): LoadedScenario {
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (e: unknown) {
    throw new PolicyValidationError([{ file, path: '(document)', code: 'YAML_SYNTAX', message: e instanceof Error ? e.message : String(e) }]);
  }
  const r = scenarioSchema.safeParse(data);
  if (!r.success) {
    throw new PolicyValidationError(
      r.error.issues.flatMap((i): PolicyProblem[] => {
        const path = i.path.filter((s): s is string | number => typeof s !== 'symbol');
        if (i.code === 'unrecognized_keys') {
          return i.keys.map((k) => ({ file, path: formatPath([...path, k]), code: 'UNKNOWN_FIELD', message: `unknown field "${k}"` }));
        }
        return [{ file, path: formatPath(path), code: i.code === 'invalid_type' ? 'WRONG_TYPE' : 'INVALID_VALUE', message: i.message }];
      }),
    );
  }
  return { scenario: r.data, file };
}

export function loadScenarioFile(file: string): LoadedScenario {
  return parseScenario(readFileSync(file, 'utf8'), file);
}

export type FlowVerdict = 'ALLOWED' | 'DENIED' | 'REDIRECTED';

export interface DirectionTrace {
  endpoint: string;
  verdict: 'ALLOW' | 'DENY' | 'REDIRECT';
  reason: LookupResult['reason'];
  policies: string[];
  l7?: { kind: L7Rules['kind']; verdict: 'ALLOWED' | 'DENIED' | null };
  /** `log.value`s of the rules behind this direction's decision. */
  log?: string[];
}

export interface FlowTrace {
  name?: string;
  src: string;
  dst: string;
  protocol: string;
  dport: number;
  srcIdentity: number;
  dstIdentity: number;
  /** Service the destination address belonged to, and the backend it was translated to. */
  service?: { name: string; backend: string; port: number };
  verdict: FlowVerdict;
  l4: FlowVerdict;
  l7: 'ALLOWED' | 'DENIED' | null;
  direction: Direction | 'both' | null;
  policies: string[];
  /** `log.value`s of the rules that decided the flow (the deciding directions'), sorted; absent when none. */
  log?: string[];
  egress: DirectionTrace | null;
  ingress: DirectionTrace | null;
  error?: string;
}

export interface TraceResult {
  flows: FlowTrace[];
  problems: PolicyProblem[];
}

const PROTO_NUM: Record<string, number> = { ...Proto, ICMPv6: Proto.ICMPV6 };

/** Builds the engine a scenario describes (policies with problems are left out and reported). */
export async function buildScenarioEngine(loaded: LoadedScenario): Promise<{ engine: PolicyEngine; problems: PolicyProblem[] }> {
  const s = loaded.scenario;
  const dns = new MemoryDnsCache();
  const engine = new PolicyEngine({ dns, mode: s.config?.policyEnforcementMode ?? 'default', allowLocalhost: s.config?.allowLocalhost ?? 'auto' });
  for (const ns of s.namespaces ?? []) await engine.upsertNamespace(ns.name, ns.labels ?? {});
  for (const n of s.nodes ?? []) await engine.upsertNode(n);
  for (const ep of s.endpoints ?? []) await engine.upsertEndpoint(ep);
  for (const svc of s.services ?? []) {
    const info: Parameters<PolicyEngine['upsertService']>[0] = { namespace: svc.namespace, name: svc.name };
    if (svc.labels) info.labels = svc.labels;
    if (svc.selector) info.selector = svc.selector;
    if (svc.clusterIPs) info.clusterIPs = svc.clusterIPs;
    if (svc.endpoints) info.endpointIps = svc.endpoints;
    if (svc.ports) info.ports = svc.ports;
    await engine.upsertService(info);
  }
  for (const [name, ips] of Object.entries(s.fqdns ?? {})) dns.set(name, ips);
  if (s.hostAddresses) engine.setHostAddresses(s.hostAddresses);
  const reserved = s.reservedAddresses ?? {};
  for (const name of ['health', 'init', 'ingress', 'unmanaged', 'world'] as const) {
    const ips = reserved[name];
    if (ips) engine.setReservedAddresses(name, ips);
  }
  // The API server's addresses may be a node's (remote-node or host with kube-apiserver, as in Cilium).
  if (reserved['kube-apiserver']) await engine.setKubeApiServerAddresses(reserved['kube-apiserver']);
  const base: PathSegment[] = ['policies'];
  const { policies, cidrGroups, problems } = loadPolicyDocuments(s.policies ?? [], loaded.file, base);
  for (const g of cidrGroups) await engine.upsertCidrGroup(cidrGroupInput(g.group));
  for (const p of policies) await engine.upsertPolicy(p.document);
  await engine.settled();
  engine.flush();
  return { engine, problems };
}

/** A flow names a peer the scenario (or the running agent) does not have. */
export class UnknownPeerError extends MeshdError {
  constructor(message: string) {
    super('MESHD_TRACE_UNKNOWN_PEER', message, { kind: 'not-found' });
  }
}

interface Peer {
  label: string;
  identity: number;
  /** Local endpoint id whose policy applies, if any. */
  endpoint?: string;
  ip?: string;
}

function resolvePeer(engine: PolicyEngine, ref: string): Peer {
  if (ref.startsWith('node:')) {
    const name = ref.slice(5);
    const n = engine.nodeIdentity(name);
    if (!n) throw new UnknownPeerError(`unknown node "${name}"`);
    const peer: Peer = { label: ref, identity: n.identity };
    if (n.local) peer.endpoint = `node:${name}`;
    return peer;
  }
  if (isIp(ref)) {
    const ep = engine.endpointByIp(ref);
    if (ep) return { label: ref, identity: engine.endpointIdentity(ep) ?? ReservedIdentity.world, ...(engine.isLocalEndpoint(ep) ? { endpoint: ep } : {}), ip: ref };
    const node = engine.nodeByIp(ref);
    if (node) return { ...resolvePeer(engine, `node:${node}`), label: ref, ip: ref };
    // One of the host's own addresses: the local node's host endpoint when there is one.
    const host = engine.isHostAddress(ref) ? engine.hostEndpoint() : undefined;
    if (host) return { label: ref, identity: ReservedIdentity.host, endpoint: host, ip: ref };
    return { label: ref, identity: engine.identityOfIp(ref), ip: ref };
  }
  if (!ref.includes('/')) throw new UnknownPeerError(`"${ref}" is not "namespace/name", "node:NAME" or an IP address`);
  const id = engine.endpointIdentity(ref);
  if (id === undefined) throw new UnknownPeerError(`unknown endpoint "${ref}"`);
  return { label: ref, identity: id, ...(engine.isLocalEndpoint(ref) ? { endpoint: ref } : {}) };
}

function l7Verdict(l7: L7Rules | undefined, flow: TraceFlow): 'ALLOWED' | 'DENIED' | null {
  if (!l7) return null;
  switch (l7.kind) {
    case 'http': {
      if (!flow.http) return null;
      const req: HttpRequest = flow.http;
      return l7.rules.some((r) => matchHttp(r, req)) ? 'ALLOWED' : 'DENIED';
    }
    case 'kafka': {
      if (!flow.kafka) return null;
      const req: KafkaRequest = flow.kafka;
      return l7.rules.some((r) => matchKafka(r, req)) ? 'ALLOWED' : 'DENIED';
    }
    case 'dns': {
      if (!flow.dns) return null;
      const req: DnsRequest = flow.dns;
      return l7.rules.some((r) => matchDnsSelector(r, req.name)) ? 'ALLOWED' : 'DENIED';
    }
    case 'tls': {
      if (!flow.tls) return null;
      const sni = flow.tls.sni;
      return l7.rules.some((r) => matchTls(r, sni, flow.http)) ? 'ALLOWED' : 'DENIED';
    }
  }
}

function translateService(s: Scenario, dst: string, port: number, proto: string): { name: string; backend: string; port: number } | undefined {
  if (!isIp(dst)) return undefined;
  for (const svc of s.services ?? []) {
    if (!(svc.clusterIPs ?? []).includes(dst)) continue;
    const sp = (svc.ports ?? []).find((p) => p.port === port && (p.protocol ?? 'TCP') === proto);
    if (!sp) continue;
    const sel = svc.selector ?? {};
    const backends = (s.endpoints ?? [])
      .filter((e) => e.namespace === svc.namespace && Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => e.labels?.[k] === v))
      .sort((a, b) => a.name.localeCompare(b.name));
    const b = backends[0];
    if (!b) continue;
    let target = port;
    if (typeof sp.targetPort === 'number') target = sp.targetPort;
    else if (typeof sp.targetPort === 'string') target = b.ports?.find((p) => p.name === sp.targetPort)?.port ?? port;
    return { name: `${svc.namespace}/${svc.name}`, backend: `${b.namespace}/${b.name}`, port: target };
  }
  return undefined;
}

export function traceFlow(engine: PolicyEngine, s: Scenario, flow: TraceFlow): FlowTrace {
  const proto = flow.protocol ?? 'TCP';
  let dport = flow.dport ?? 0;
  let dstRef = flow.dst;
  const service = translateService(s, flow.dst, dport, proto);
  if (service) {
    dstRef = service.backend;
    dport = service.port;
  }
  const base = { ...(flow.name !== undefined ? { name: flow.name } : {}), src: flow.src, dst: flow.dst, protocol: proto, dport };
  let src: Peer;
  let dst: Peer;
  try {
    src = resolvePeer(engine, flow.src);
    dst = resolvePeer(engine, dstRef);
  } catch (e: unknown) {
    if (!(e instanceof UnknownPeerError)) throw e;
    return {
      ...base,
      srcIdentity: 0,
      dstIdentity: 0,
      verdict: 'DENIED',
      l4: 'DENIED',
      l7: null,
      direction: null,
      policies: [],
      egress: null,
      ingress: null,
      error: e.message,
    };
  }
  const protoNum = PROTO_NUM[proto] ?? Proto.TCP;
  const side = (endpoint: string | undefined, dir: Direction, remote: number): DirectionTrace | null => {
    if (endpoint === undefined) return null;
    const pol = engine.endpointPolicy(endpoint);
    if (!pol) return null;
    const r = lookupEntries(pol[dir], remote, protoNum, dport);
    const t: DirectionTrace = { endpoint, verdict: r.verdict, reason: r.reason, policies: r.policies };
    if (r.log) t.log = r.log;
    if (r.verdict === 'REDIRECT' && r.l7) t.l7 = { kind: r.l7.kind, verdict: l7Verdict(r.l7, flow) };
    return t;
  };
  const egress = side(src.endpoint, 'egress', dst.identity);
  const ingress = side(dst.endpoint, 'ingress', src.identity);
  const sides: Array<[Direction, DirectionTrace]> = [];
  if (egress) sides.push(['egress', egress]);
  if (ingress) sides.push(['ingress', ingress]);
  const pick = (f: (t: DirectionTrace) => boolean): { direction: Direction | 'both' | null; policies: string[]; log?: string[] } => {
    const hit = sides.filter(([, t]) => f(t));
    const direction = hit.length === 0 ? null : hit.length === 2 ? 'both' : (hit[0]?.[0] ?? null);
    const log = [...new Set(hit.flatMap(([, t]) => t.log ?? []))].sort();
    return { direction, policies: [...new Set(hit.flatMap(([, t]) => t.policies))].sort(), ...(log.length > 0 ? { log } : {}) };
  };
  const out = { ...base, ...(service ? { service } : {}), srcIdentity: src.identity, dstIdentity: dst.identity, egress, ingress };
  if (sides.some(([, t]) => t.verdict === 'DENY')) {
    return { ...out, verdict: 'DENIED', l4: 'DENIED', l7: null, ...pick((t) => t.verdict === 'DENY') };
  }
  const redirected = sides.filter(([, t]) => t.verdict === 'REDIRECT');
  if (redirected.length > 0) {
    const l7s = redirected.map(([, t]) => t.l7?.verdict ?? null);
    if (l7s.some((v) => v === 'DENIED')) {
      return { ...out, verdict: 'DENIED', l4: 'REDIRECTED', l7: 'DENIED', ...pick((t) => t.l7?.verdict === 'DENIED') };
    }
    if (l7s.every((v) => v === 'ALLOWED')) {
      return { ...out, verdict: 'ALLOWED', l4: 'REDIRECTED', l7: 'ALLOWED', ...pick((t) => t.verdict === 'REDIRECT') };
    }
    return { ...out, verdict: 'REDIRECTED', l4: 'REDIRECTED', l7: null, ...pick((t) => t.verdict === 'REDIRECT') };
  }
  return { ...out, verdict: 'ALLOWED', l4: 'ALLOWED', l7: null, ...pick((t) => t.reason === 'entry') };
}

export async function traceScenario(loaded: LoadedScenario): Promise<TraceResult> {
  const { engine, problems } = await buildScenarioEngine(loaded);
  return { flows: loaded.scenario.flows.map((f) => traceFlow(engine, loaded.scenario, f)), problems };
}

/** Differences between each flow's `expect` and the trace (empty when all match). */
export function checkExpectations(loaded: LoadedScenario, result: TraceResult): string[] {
  const out: string[] = [];
  const want = (loaded.scenario.expectProblems ?? []).map((p) => `${p.path} ${p.code}`).sort();
  const got = result.problems.map((p) => `${p.path} ${p.code}`).sort();
  if (JSON.stringify(want) !== JSON.stringify(got)) out.push(`problems ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  loaded.scenario.flows.forEach((f, i) => {
    const e = f.expect;
    const t = result.flows[i];
    if (!e || !t) return;
    const label = `flows[${i}]${f.name ? ` (${f.name})` : ''} ${f.src} → ${f.dst}:${f.dport ?? 0}/${f.protocol ?? 'TCP'}`;
    if (t.error) out.push(`${label}: ${t.error}`);
    if (t.verdict !== e.verdict) out.push(`${label}: verdict ${t.verdict}, expected ${e.verdict}`);
    if (e.l4 !== undefined && t.l4 !== e.l4) out.push(`${label}: l4 ${t.l4}, expected ${e.l4}`);
    if (e.l7 !== undefined && t.l7 !== e.l7) out.push(`${label}: l7 ${String(t.l7)}, expected ${String(e.l7)}`);
    if (e.direction !== undefined && t.direction !== e.direction) out.push(`${label}: direction ${String(t.direction)}, expected ${String(e.direction)}`);
    if (e.policies !== undefined && JSON.stringify([...e.policies].sort()) !== JSON.stringify(t.policies)) {
      out.push(`${label}: policies ${JSON.stringify(t.policies)}, expected ${JSON.stringify(e.policies)}`);
    }
    if (e.log !== undefined && JSON.stringify([...e.log].sort()) !== JSON.stringify(t.log ?? [])) out.push(`${label}: log ${JSON.stringify(t.log ?? [])}, expected ${JSON.stringify(e.log)}`);
  });
  return out;
}

/** Human-readable table of a trace. */
export function formatTrace(result: TraceResult): string {
  const lines: string[] = [];
  for (const p of result.problems) lines.push(`problem: ${p.file ? `${p.file}: ` : ''}${p.path}: ${p.message} [${p.code}]`);
  for (const f of result.flows) {
    const head = `${f.src} (${f.srcIdentity}) → ${f.dst}${f.service ? ` [${f.service.name} → ${f.service.backend}]` : ''} (${f.dstIdentity}) ${f.protocol}/${f.dport}`;
    const why = f.error
      ? `error: ${f.error}`
      : `l4=${f.l4} l7=${f.l7 ?? '-'} by ${f.direction ?? 'no policy'}${f.policies.length ? ` [${f.policies.join(', ')}]` : ''}${f.log ? ` log=${f.log.join(',')}` : ''}`;
    lines.push(`${f.verdict.padEnd(10)} ${head}  ${why}`);
  }
  return lines.join('\n');
}
