/**
 * Ingestion: Gateway API objects (already parsed by their src/k8s modules)
 * → the model (model.ts). A pure function of its input: which Gateways and
 * listeners are served, which route rules attach where with which backends,
 * and every condition the spec prescribes for GatewayClasses, Gateways,
 * listeners and route parents.
 *
 *   const model = ingest({ controllerName: CONTROLLER_NAME, gatewayClasses, gateways, httpRoutes, …, nodeAddresses });
 *   translate(model);                  // Envoy resources (translate.ts)
 *   model.status.routes.get('HTTPRoute/default/web');   // [{ parentRef, conditions: [Accepted, ResolvedRefs] }]
 *
 * Bad input costs only what it touches: a rule with a regex RE2 refuses or
 * an unsupported filter is dropped (the route says PartiallyInvalid, or
 * Accepted=False when no rule is left); a backend that is missing or not
 * granted answers 500 for its share of the weight (ResolvedRefs=False); a
 * listener whose certificate is missing or does not parse is not programmed
 * (ResolvedRefs=False); everything else is served.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import type { BackendTlsPolicy } from '../k8s/backend-tls-policy.js';
import type { ConfigMap } from '../k8s/config-map.js';
import type { EndpointSlice } from '../k8s/endpoint-slice.js';
import { SERVICE_NAME_LABEL } from '../k8s/endpoint-slice.js';
import type { Gateway, Listener } from '../k8s/gateway.js';
import type { GatewayClass } from '../k8s/gateway-class.js';
import { GATEWAY_GROUP, parseGatewayDuration, type BackendObjectRef, type HeaderModifier, type ParentRef } from '../k8s/gateway-api-common.js';
import type { GrpcRoute } from '../k8s/grpc-route.js';
import type { HttpRoute, HttpRouteFilter } from '../k8s/http-route.js';
import type { Namespace } from '../k8s/namespace.js';
import type { ReferenceGrant } from '../k8s/reference-grant.js';
import type { Service } from '../k8s/service.js';
import { matchSelector } from '../lbipam/label-selector.js';
import type { SecretData } from '../proxy/sds.js';
import type {
  GatewayModel,
  GatewayStatus,
  ListenerStatus,
  ModelBackend,
  ConditionType,
  ModelChain,
  ModelCluster,
  ModelCondition,
  ModelGateway,
  ModelMatch,
  ModelPort,
  ModelRoute,
  ModelSecret,
  ModelStatus,
  RouteParentStatus,
} from './model.js';
import { re2Problem } from './regex.js';

export interface GatewayInput {
  controllerName: string;
  gatewayClasses: readonly GatewayClass[];
  gateways: readonly Gateway[];
  httpRoutes: readonly HttpRoute[];
  grpcRoutes: readonly GrpcRoute[];
  referenceGrants: readonly ReferenceGrant[];
  services: readonly Service[];
  endpointSlices: readonly EndpointSlice[];
  namespaces: readonly Namespace[];
  /** "namespace/name" → key → text (src/k8s/secret.ts secretData). */
  secrets: SecretData;
  /** BackendTLSPolicies and the ConfigMaps holding their CA bundles (optional: none). */
  backendTlsPolicies?: readonly BackendTlsPolicy[];
  configMaps?: readonly ConfigMap[];
  /** The node's addresses: a Gateway's address when neither spec.addresses nor its LoadBalancer Service gives one. */
  nodeAddresses: readonly string[];
}

/** The LoadBalancer Service meshd keeps per Gateway (its status carries the LB IPAM address). */
export function gatewayServiceName(gatewayName: string): string {
  const n = `meshd-gateway-${gatewayName}`;
  return n.length <= 63 ? n : n.slice(0, 63).replace(/-+$/, '');
}

export const listenerName = (ns: string, gw: string, port: number): string => `meshd-gateway/${ns}/${gw}/${port}`;
export const clusterName = (ns: string, svc: string, port: number): string => `meshd-gateway/${ns}/${svc}/${port}`;
export const secretName = (ns: string, name: string): string => `meshd-gateway-cert/${ns}/${name}`;

const HTTP_KINDS = [
  { group: GATEWAY_GROUP, kind: 'HTTPRoute' },
  { group: GATEWAY_GROUP, kind: 'GRPCRoute' },
];
const SUPPORTED_FILTERS = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror']);
const GRPC_FILTERS = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror']);

const cond = (type: ConditionType, ok: boolean, reason: string, message: string, generation: number): ModelCondition => ({
  type,
  status: ok ? 'True' : 'False',
  reason,
  message,
  observedGeneration: generation,
});

// ---- hostnames ----------------------------------------------------------------------------------

const isWild = (h: string): boolean => h.startsWith('*.');

/** Does wildcard `w` ("*.example.com") cover `h` (one or more labels before the suffix)? */
const covers = (w: string, h: string): boolean => h.endsWith(w.slice(1)) && h.length > w.length - 1;

/** The hostnames a route serves on a listener (spec: the intersection), empty when none. */
export function intersectHostnames(listener: string | undefined, route: readonly string[]): string[] {
  if (route.length === 0) return [listener ?? '*'];
  if (listener === undefined) return [...route];
  const out = new Set<string>();
  for (const h of route) {
    if (h === listener) out.add(h);
    else if (isWild(listener) && !isWild(h) && covers(listener, h)) out.add(h);
    else if (isWild(listener) && isWild(h) && covers(listener, h.slice(2))) out.add(h);
    else if (isWild(h) && !isWild(listener) && covers(h, listener)) out.add(listener);
    else if (isWild(h) && isWild(listener) && covers(h, listener.slice(2))) out.add(listener);
  }
  return [...out];
}

// ---- references ---------------------------------------------------------------------------------

function granted(grants: readonly ReferenceGrant[], from: { group: string; kind: string; namespace: string }, to: { group: string; kind: string; namespace: string; name: string }): boolean {
  if (from.namespace === to.namespace) return true;
  return grants.some(
    (g) =>
      g.metadata.namespace === to.namespace &&
      g.spec.from.some((f) => f.group === from.group && f.kind === from.kind && f.namespace === from.namespace) &&
      g.spec.to.some((t) => t.group === to.group && t.kind === to.kind && (t.name === undefined || t.name === to.name)),
  );
}

/** `BackendTLSPolicyInvalid`: the backend answers 500; the policy's own status says why, not the route's. */
type RefResult = { ok: true; cluster: ModelCluster } | { ok: false; reason: 'InvalidKind' | 'RefNotPermitted' | 'BackendNotFound' | 'BackendTLSPolicyInvalid'; message: string };

/** The CA bundle Debian (and most distributions) keep the system's trusted roots in. */
export const SYSTEM_CA_FILE = '/etc/ssl/certs/ca-certificates.crt';

interface Ctx {
  input: GatewayInput;
  services: Map<string, Service>;
  slices: Map<string, EndpointSlice[]>;
  clusters: Map<string, ModelCluster>;
  namespaces: Map<string, Namespace>;
  /** Cluster name → the BackendTLSPolicy ("ns/name") it follows. */
  clusterPolicy: Map<string, string>;
  /** Policy → its conditions and the Gateways using it (filled as routes attach). */
  policies: Map<string, { ancestors: Map<string, ParentRef>; conditions: ModelCondition[] }>;
  /** Clusters whose policy is invalid. */
  badClusters: Map<string, string>;
  /** "<Kind>/<namespace>/<name>" of a route → the clusters its backends resolved to (valid or not). */
  routeClusters: Map<string, Set<string>>;
}

function resolveBackend(ctx: Ctx, route: { kind: string; namespace: string; name: string }, ref: BackendObjectRef, grpc: boolean): RefResult {
  const ns = ref.namespace ?? route.namespace;
  const where = `${ref.kind} ${ns}/${ref.name}`;
  if (ref.group !== '' || ref.kind !== 'Service') return { ok: false, reason: 'InvalidKind', message: `${ref.group || 'core'}/${ref.kind} is not a supported backend kind (Service)` };
  if (!granted(ctx.input.referenceGrants, { group: GATEWAY_GROUP, kind: route.kind, namespace: route.namespace }, { group: '', kind: 'Service', namespace: ns, name: ref.name })) {
    return { ok: false, reason: 'RefNotPermitted', message: `${where} is in another namespace and no ReferenceGrant there allows ${route.kind}s from ${route.namespace}` };
  }
  const svc = ctx.services.get(`${ns}/${ref.name}`);
  if (!svc) return { ok: false, reason: 'BackendNotFound', message: `${where} not found` };
  if (ref.port === undefined) return { ok: false, reason: 'BackendNotFound', message: `${where}: backendRef.port is required for a Service` };
  const sp = svc.spec.ports.find((p) => p.port === ref.port && p.protocol === 'TCP');
  if (!sp) return { ok: false, reason: 'BackendNotFound', message: `${where} has no TCP port ${ref.port}` };
  const name = clusterName(ns, ref.name, ref.port);
  let c = ctx.clusters.get(name);
  if (!c) {
    c = { name, service: `${ns}/${ref.name}`, port: ref.port, http2: grpc, endpoints: endpointsOf(ctx.slices.get(`${ns}/${ref.name}`) ?? [], sp) };
    applyBackendTls(ctx, c, ns, ref.name, sp.name);
    ctx.clusters.set(name, c);
  } else if (grpc) c.http2 = true;
  const rk = `${route.kind}/${route.namespace}/${route.name}`;
  ctx.routeClusters.set(rk, (ctx.routeClusters.get(rk) ?? new Set()).add(name));
  const bad = ctx.badClusters.get(name);
  if (bad !== undefined) return { ok: false, reason: 'BackendTLSPolicyInvalid', message: bad };
  return { ok: true, cluster: c };
}

/** The BackendTLSPolicy targeting this Service (port), if any: the cluster's TLS, or why it cannot have it. */
function applyBackendTls(ctx: Ctx, c: ModelCluster, ns: string, svc: string, portName: string | undefined): void {
  const pol = (ctx.input.backendTlsPolicies ?? [])
    .filter((p) => p.metadata.namespace === ns && p.spec.targetRefs.some((t) => t.group === '' && t.kind === 'Service' && t.name === svc && (t.sectionName === undefined || t.sectionName === portName)))
    .sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? '') || a.metadata.name.localeCompare(b.metadata.name))[0];
  if (!pol) return;
  const key = `${ns}/${pol.metadata.name}`;
  const gen = pol.metadata.generation;
  const v = pol.spec.validation;
  let problem: { reason: string; message: string } | null = null;
  let ca: { pem: string } | { file: string } | null = null;
  if (v.wellKnownCACertificates !== undefined) {
    if (v.wellKnownCACertificates === 'System' && v.caCertificateRefs.length === 0) ca = { file: SYSTEM_CA_FILE };
    else problem = { reason: 'Invalid', message: 'wellKnownCACertificates must be "System" and exclusive of caCertificateRefs' };
  } else {
    const pems: string[] = [];
    for (const r of v.caCertificateRefs) {
      if (r.group !== '' || (r.kind !== 'ConfigMap' && r.kind !== 'Secret')) {
        problem ??= { reason: 'InvalidKind', message: `${r.kind} ${r.name} is not a ConfigMap or Secret` };
        continue;
      }
      const text = r.kind === 'ConfigMap' ? ctx.input.configMaps?.find((m) => m.metadata.namespace === ns && m.metadata.name === r.name)?.data['ca.crt'] : ctx.input.secrets.get(`${ns}/${r.name}`)?.['ca.crt'];
      try {
        if (text === undefined) throw new Error('not found or without ca.crt');
        new X509Certificate(text);
        pems.push(text);
      } catch (e) {
        problem ??= { reason: 'InvalidCACertificateRef', message: `${r.kind} ${ns}/${r.name}: ${e instanceof Error ? e.message : String(e)}` };
      }
    }
    if (pems.length === 0) problem ??= { reason: 'InvalidCACertificateRef', message: 'no CA certificate' };
    else ca = { pem: pems.join('\n') };
  }
  ctx.clusterPolicy.set(c.name, key);
  const conditions = [cond('Accepted', problem === null, problem === null ? 'Accepted' : 'NoValidCACertificate', problem?.message ?? 'accepted', gen), cond('ResolvedRefs', problem === null, problem?.reason ?? 'ResolvedRefs', problem?.message ?? 'references resolved', gen)];
  ctx.policies.set(key, { ancestors: ctx.policies.get(key)?.ancestors ?? new Map(), conditions });
  if (problem || !ca) ctx.badClusters.set(c.name, `BackendTLSPolicy ${key}: ${problem?.message ?? 'no CA'}`);
  else c.tls = { sni: v.hostname, ca };
}

/** Ready endpoints of a Service port: the slice port of the same name (targetPort resolved by the EndpointSlice controller). */
function endpointsOf(slices: readonly EndpointSlice[], sp: Service['spec']['ports'][number]): Array<{ ip: string; port: number }> {
  const out = new Map<string, { ip: string; port: number }>();
  for (const s of slices) {
    if (s.addressType === 'FQDN') continue;
    const port = s.ports.find((p) => (p.name ?? '') === (sp.name ?? '') && p.protocol === 'TCP')?.port;
    if (port === undefined) continue;
    for (const e of s.endpoints) {
      if (e.conditions?.ready === false) continue;
      for (const ip of e.addresses) out.set(`${ip}:${port}`, { ip, port });
    }
  }
  return [...out.values()].sort((a, b) => (a.ip === b.ip ? a.port - b.port : a.ip < b.ip ? -1 : 1));
}

// ---- listeners ----------------------------------------------------------------------------------

interface ListenerState {
  l: Listener;
  status: ListenerStatus;
  /** Routes may attach (Accepted, not conflicted). */
  attachable: boolean;
  /** Served (attachable and its references resolved). */
  programmable: boolean;
  certificates: string[];
  /** hostname → routes, filled while routes attach. */
  hosts: Map<string, ModelRoute[]>;
  allowedKinds: Array<{ group: string; kind: string }>;
}

function ingestListeners(ctx: Ctx, gw: Gateway, secrets: Map<string, ModelSecret>): ListenerState[] {
  const gen = gw.metadata.generation;
  const ns = gw.metadata.namespace;
  const byPort = new Map<number, Listener[]>();
  for (const l of gw.spec.listeners) byPort.set(l.port, [...(byPort.get(l.port) ?? []), l]);
  return gw.spec.listeners.map((l): ListenerState => {
    const conds: ModelCondition[] = [];
    const supported = l.protocol === 'HTTP' || (l.protocol === 'HTTPS' && (l.tls?.mode ?? 'Terminate') === 'Terminate');
    const wanted = l.allowedRoutes.kinds ?? HTTP_KINDS;
    const allowedKinds = supported ? wanted.filter((k) => HTTP_KINDS.some((h) => h.group === k.group && h.kind === k.kind)) : [];
    const samePort = byPort.get(l.port) ?? [];
    const protoConflict = samePort.some((o) => o.protocol !== l.protocol);
    const hostConflict = !protoConflict && samePort.some((o) => o !== l && (o.hostname ?? '') === (l.hostname ?? ''));
    let refsOk = true;
    /** Only certificates keep a listener from being programmed; invalid route kinds just are not served. */
    let certsOk = true;
    let refsReason = 'ResolvedRefs';
    let refsMessage = 'references resolved';
    const certificates: string[] = [];
    if (supported && wanted.length > allowedKinds.length) {
      refsOk = false;
      refsReason = 'InvalidRouteKinds';
      refsMessage = `route kinds not supported: ${wanted.filter((k) => !allowedKinds.includes(k)).map((k) => k.kind).join(', ')}`;
    }
    if (supported && l.protocol === 'HTTPS') {
      const refs = l.tls?.certificateRefs ?? [];
      if (refs.length === 0) {
        refsOk = false;
        certsOk = false;
        refsReason = 'InvalidCertificateRef';
        refsMessage = 'an HTTPS listener needs tls.certificateRefs';
      }
      for (const r of refs) {
        const sns = r.namespace ?? ns;
        const bad = (reason: string, message: string) => {
          certsOk = false;
          if (!refsOk) return;
          refsOk = false;
          refsReason = reason;
          refsMessage = message;
        };
        if (r.group !== '' || r.kind !== 'Secret') {
          bad('InvalidCertificateRef', `${r.kind} ${sns}/${r.name} is not a Secret`);
          continue;
        }
        if (!granted(ctx.input.referenceGrants, { group: GATEWAY_GROUP, kind: 'Gateway', namespace: ns }, { group: '', kind: 'Secret', namespace: sns, name: r.name })) {
          bad('RefNotPermitted', `Secret ${sns}/${r.name} is in another namespace and no ReferenceGrant there allows Gateways from ${ns}`);
          continue;
        }
        const data = ctx.input.secrets.get(`${sns}/${r.name}`);
        const problem = certificateProblem(data);
        if (problem) {
          bad('InvalidCertificateRef', `Secret ${sns}/${r.name}: ${problem}`);
          continue;
        }
        const name = secretName(sns, r.name);
        secrets.set(name, { name, certificateChain: data?.['tls.crt'] ?? '', privateKey: data?.['tls.key'] ?? '' });
        certificates.push(name);
      }
    }
    const accepted = supported;
    conds.push(cond('Accepted', accepted, accepted ? 'Accepted' : 'UnsupportedProtocol', accepted ? 'listener accepted' : `protocol ${l.protocol}${l.tls?.mode === 'Passthrough' ? ' (TLS passthrough)' : ''} is not supported`, gen));
    conds.push(cond('ResolvedRefs', refsOk, refsReason, refsMessage, gen));
    const conflicted = protoConflict || hostConflict;
    conds.push({ ...cond('Conflicted', false, 'NoConflicts', 'no conflicts', gen), ...(conflicted ? { status: 'True' as const, reason: protoConflict ? 'ProtocolConflict' : 'HostnameConflict', message: protoConflict ? `another listener on port ${l.port} has another protocol` : `another listener on port ${l.port} has the same hostname` } : {}) });
    const attachable = accepted && !conflicted;
    const programmable = attachable && certsOk;
    conds.push(cond('Programmed', programmable, programmable ? 'Programmed' : 'Invalid', programmable ? 'listener programmed' : 'listener not programmed: see its other conditions', gen));
    return { l, status: { name: l.name, attachedRoutes: 0, supportedKinds: allowedKinds, conditions: conds }, attachable, programmable, certificates, hosts: new Map(), allowedKinds };
  });
}

function certificateProblem(data: Readonly<Record<string, string>> | undefined): string | null {
  if (!data) return 'not found';
  const crt = data['tls.crt'];
  const key = data['tls.key'];
  if (!crt || !key) return 'tls.crt and tls.key are required';
  try {
    new X509Certificate(crt);
  } catch (e) {
    return `tls.crt does not parse: ${e instanceof Error ? e.message : String(e)}`;
  }
  try {
    createPrivateKey(key);
  } catch (e) {
    return `tls.key does not parse: ${e instanceof Error ? e.message : String(e)}`;
  }
  return null;
}

// ---- routes -------------------------------------------------------------------------------------

interface RouteView {
  kind: 'HTTPRoute' | 'GRPCRoute';
  namespace: string;
  name: string;
  generation: number;
  created: string;
  parentRefs: ParentRef[];
  hostnames: string[];
  /** Rules as translated, or the reason a rule is dropped. */
  rules: Array<{ routes: Omit<ModelRoute, 'name'>[]; problem?: string; refProblem?: { reason: string; message: string } }>;
}

function headerMod(h: HeaderModifier | undefined): HeaderModifier | undefined {
  if (!h) return undefined;
  const lower = (xs: Array<{ name: string; value: string }> | undefined) => xs?.map((x) => ({ name: x.name.toLowerCase(), value: x.value }));
  return { ...(h.set ? { set: lower(h.set) } : {}), ...(h.add ? { add: lower(h.add) } : {}), ...(h.remove ? { remove: h.remove.map((x) => x.toLowerCase()) } : {}) };
}

function backendsOf(ctx: Ctx, rv: { kind: 'HTTPRoute' | 'GRPCRoute'; namespace: string; name: string }, refs: ReadonlyArray<BackendObjectRef & { weight: number; filters?: Array<{ type: string; requestHeaderModifier?: HeaderModifier; responseHeaderModifier?: HeaderModifier }> }>, grpc: boolean) {
  let refProblem: { reason: string; message: string } | undefined;
  const backends: ModelBackend[] = refs.map((b) => {
    const r = resolveBackend(ctx, rv, b, grpc);
    if (!r.ok && r.reason !== 'BackendTLSPolicyInvalid') refProblem ??= { reason: r.reason, message: r.message };
    const req = b.filters?.find((f) => f.type === 'RequestHeaderModifier')?.requestHeaderModifier;
    const res = b.filters?.find((f) => f.type === 'ResponseHeaderModifier')?.responseHeaderModifier;
    return { cluster: r.ok ? r.cluster.name : null, weight: b.weight, ...(req ? { requestHeaders: headerMod(req) } : {}), ...(res ? { responseHeaders: headerMod(res) } : {}) };
  });
  return { backends, refProblem };
}

function mirrorOf(ctx: Ctx, rv: { kind: 'HTTPRoute' | 'GRPCRoute'; namespace: string; name: string }, f: { requestMirror?: { backendRef: BackendObjectRef; percent?: number | undefined; fraction?: { numerator: number; denominator: number } | undefined } | undefined }, grpc: boolean) {
  const m = f.requestMirror;
  if (!m) return { problem: 'RequestMirror needs requestMirror' };
  const r = resolveBackend(ctx, rv, m.backendRef, grpc);
  if (!r.ok) return { refProblem: { reason: r.reason, message: r.message } };
  const percent = m.percent ?? (m.fraction ? (100 * m.fraction.numerator) / m.fraction.denominator : 100);
  return { mirror: { cluster: r.cluster.name, percent: Math.min(100, percent) } };
}

function httpRouteView(ctx: Ctx, r: HttpRoute): RouteView {
  const rv = { kind: 'HTTPRoute' as const, namespace: r.metadata.namespace, name: r.metadata.name };
  const rules = r.spec.rules.map((rule) => {
    const unsupported = [...rule.filters, ...rule.backendRefs.flatMap((b) => b.filters ?? [])].find((f) => !SUPPORTED_FILTERS.has(f.type));
    if (unsupported) return { routes: [], problem: `filter type ${unsupported.type} is not supported` };
    const badRegex = rule.matches
      .flatMap((m) => [...(m.path?.type === 'RegularExpression' ? [m.path.value] : []), ...[...(m.headers ?? []), ...(m.queryParams ?? [])].filter((h) => h.type === 'RegularExpression').map((h) => h.value)])
      .map((re) => ({ re, p: re2Problem(re) }))
      .find((x) => x.p !== null);
    if (badRegex) return { routes: [], problem: `regular expression ${JSON.stringify(badRegex.re)} is not valid RE2: ${badRegex.p ?? ''}` };
    const badPath = rule.matches.find((m) => m.path && m.path.type !== 'RegularExpression' && !m.path.value.startsWith('/'));
    if (badPath) return { routes: [], problem: `path ${JSON.stringify(badPath.path?.value)} must start with "/"` };
    const { backends, refProblem: ref1 } = backendsOf(ctx, rv, rule.backendRefs, false);
    let refProblem = ref1;
    const f = (t: string): HttpRouteFilter | undefined => rule.filters.find((x) => x.type === t);
    const mirrors: ModelRoute['mirrors'] = [];
    for (const mf of rule.filters.filter((x) => x.type === 'RequestMirror')) {
      const m = mirrorOf(ctx, rv, mf, false);
      if ('mirror' in m && m.mirror) mirrors.push(m.mirror);
      else if ('refProblem' in m) refProblem ??= m.refProblem;
    }
    const redirect = f('RequestRedirect')?.requestRedirect;
    const rewrite = f('URLRewrite')?.urlRewrite;
    const pathMod = (p: { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; replaceFullPath?: string | undefined; replacePrefixMatch?: string | undefined } | undefined) =>
      p ? { type: p.type, value: (p.type === 'ReplaceFullPath' ? p.replaceFullPath : p.replacePrefixMatch) ?? '/' } : undefined;
    if ((redirect?.path ?? rewrite?.path)?.type === 'ReplacePrefixMatch' && rule.matches.some((m) => (m.path?.type ?? 'PathPrefix') !== 'PathPrefix')) {
      return { routes: [], problem: 'ReplacePrefixMatch needs PathPrefix matches' };
    }
    let timeouts: ModelRoute['timeouts'];
    if (rule.timeouts) {
      const req = rule.timeouts.request === undefined ? undefined : parseGatewayDuration(rule.timeouts.request);
      const be = rule.timeouts.backendRequest === undefined ? undefined : parseGatewayDuration(rule.timeouts.backendRequest);
      if ((rule.timeouts.request !== undefined && req === undefined) || (rule.timeouts.backendRequest !== undefined && be === undefined)) return { routes: [], problem: 'timeouts must be Gateway API durations such as "10s"' };
      if (req !== undefined && be !== undefined && req !== 0 && (be === 0 || be > req)) return { routes: [], problem: 'timeouts.backendRequest must not exceed timeouts.request' };
      timeouts = { ...(req !== undefined ? { requestMs: req } : {}), ...(be !== undefined ? { backendRequestMs: be } : {}) };
    }
    const base: Omit<ModelRoute, 'name' | 'match'> = {
      backends,
      mirrors,
      ...(f('RequestHeaderModifier') ? { requestHeaders: headerMod(f('RequestHeaderModifier')?.requestHeaderModifier) } : {}),
      ...(f('ResponseHeaderModifier') ? { responseHeaders: headerMod(f('ResponseHeaderModifier')?.responseHeaderModifier) } : {}),
      ...(redirect
        ? { redirect: { statusCode: redirect.statusCode, ...(redirect.scheme ? { scheme: redirect.scheme } : {}), ...(redirect.hostname ? { hostname: redirect.hostname } : {}), ...(redirect.port ? { port: redirect.port } : {}), ...(pathMod(redirect.path) ? { path: pathMod(redirect.path) } : {}) } }
        : {}),
      ...(rewrite ? { rewrite: { ...(rewrite.hostname ? { hostname: rewrite.hostname } : {}), ...(pathMod(rewrite.path) ? { path: pathMod(rewrite.path) } : {}) } } : {}),
      ...(timeouts ? { timeouts } : {}),
    };
    const routes = rule.matches.map((m): Omit<ModelRoute, 'name'> => {
      const path = m.path ?? { type: 'PathPrefix' as const, value: '/' };
      const match: ModelMatch = { path: { type: path.type, value: path.value }, headers: m.headers ?? [], queryParams: m.queryParams ?? [], ...(m.method ? { method: m.method } : {}) };
      return { ...base, match };
    });
    return { routes, ...(refProblem ? { refProblem } : {}) };
  });
  return { ...rv, name: r.metadata.name, generation: r.metadata.generation, created: r.metadata.creationTimestamp ?? '', parentRefs: r.spec.parentRefs, hostnames: r.spec.hostnames, rules };
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function grpcRouteView(ctx: Ctx, r: GrpcRoute): RouteView {
  const rv = { kind: 'GRPCRoute' as const, namespace: r.metadata.namespace, name: r.metadata.name };
  const rules = r.spec.rules.map((rule) => {
    const unsupported = [...rule.filters, ...rule.backendRefs.flatMap((b) => b.filters ?? [])].find((f) => !GRPC_FILTERS.has(f.type));
    if (unsupported) return { routes: [], problem: `filter type ${unsupported.type} is not supported` };
    const { backends, refProblem: ref1 } = backendsOf(ctx, rv, rule.backendRefs, true);
    let refProblem = ref1;
    const mirrors: ModelRoute['mirrors'] = [];
    for (const mf of rule.filters.filter((x) => x.type === 'RequestMirror')) {
      const m = mirrorOf(ctx, rv, mf, true);
      if ('mirror' in m && m.mirror) mirrors.push(m.mirror);
      else if ('refProblem' in m) refProblem ??= m.refProblem;
    }
    const req = rule.filters.find((x) => x.type === 'RequestHeaderModifier')?.requestHeaderModifier;
    const res = rule.filters.find((x) => x.type === 'ResponseHeaderModifier')?.responseHeaderModifier;
    let problem: string | undefined;
    const routes = rule.matches.map((m): Omit<ModelRoute, 'name'> => {
      const svc = m.method?.service;
      const meth = m.method?.method;
      let path: ModelMatch['path'] = { type: 'PathPrefix', value: '/' };
      if (m.method?.type === 'RegularExpression') {
        for (const re of [svc, meth]) if (re !== undefined && re2Problem(re) !== null) problem ??= `regular expression ${JSON.stringify(re)} is not valid RE2`;
        path = { type: 'RegularExpression', value: `/${svc ?? '[^/]+'}/${meth ?? '[^/]+'}` };
        const whole = re2Problem(path.value);
        if (whole !== null) problem ??= `regular expression ${JSON.stringify(path.value)}: ${whole}`;
      } else if (svc && meth) path = { type: 'Exact', value: `/${svc}/${meth}` };
      else if (svc) path = { type: 'PathPrefix', value: `/${svc}` };
      else if (meth) path = { type: 'RegularExpression', value: `/[^/]+/${escapeRe(meth)}` };
      for (const h of m.headers ?? []) if (h.type === 'RegularExpression' && re2Problem(h.value) !== null) problem ??= `regular expression ${JSON.stringify(h.value)} is not valid RE2`;
      return {
        match: { path, headers: m.headers ?? [], queryParams: [], grpc: true },
        backends,
        mirrors,
        ...(req ? { requestHeaders: headerMod(req) } : {}),
        ...(res ? { responseHeaders: headerMod(res) } : {}),
      };
    });
    return problem ? { routes: [], problem } : { routes, ...(refProblem ? { refProblem } : {}) };
  });
  return { ...rv, name: r.metadata.name, generation: r.metadata.generation, created: r.metadata.creationTimestamp ?? '', parentRefs: r.spec.parentRefs, hostnames: r.spec.hostnames, rules };
}

/** The spec's precedence: Exact, then (regex,) longest prefix; method; most headers; most query params; oldest route; name; rule order. */
function precedence(a: ModelRoute & { order: [string, string, number] }, b: ModelRoute & { order: [string, string, number] }): number {
  const rank = (m: ModelMatch) => (m.path.type === 'Exact' ? 0 : m.path.type === 'RegularExpression' ? 1 : 2);
  return (
    rank(a.match) - rank(b.match) ||
    b.match.path.value.length - a.match.path.value.length ||
    Number(b.match.method !== undefined) - Number(a.match.method !== undefined) ||
    b.match.headers.length - a.match.headers.length ||
    b.match.queryParams.length - a.match.queryParams.length ||
    a.order[0].localeCompare(b.order[0]) ||
    a.order[1].localeCompare(b.order[1]) ||
    a.order[2] - b.order[2]
  );
}

// ---- the whole --------------------------------------------------------------------------------

export function ingest(input: GatewayInput): GatewayModel {
  const ctx: Ctx = {
    input,
    services: new Map(input.services.map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s])),
    slices: new Map(),
    clusters: new Map(),
    namespaces: new Map(input.namespaces.map((n) => [n.metadata.name, n])),
    clusterPolicy: new Map(),
    policies: new Map(),
    badClusters: new Map(),
    routeClusters: new Map(),
  };
  for (const s of input.endpointSlices) {
    const k = `${s.metadata.namespace}/${s.metadata.labels[SERVICE_NAME_LABEL] ?? ''}`;
    ctx.slices.set(k, [...(ctx.slices.get(k) ?? []), s]);
  }
  const status: ModelStatus = { gatewayClasses: new Map(), gateways: new Map(), routes: new Map(), backendTlsPolicies: new Map() };
  const ours = new Set<string>();
  for (const gc of input.gatewayClasses) {
    if (gc.spec.controllerName !== input.controllerName) continue;
    const gen = gc.metadata.generation;
    const params = gc.spec.parametersRef;
    status.gatewayClasses.set(gc.metadata.name, [
      cond('Accepted', !params, params ? 'InvalidParameters' : 'Accepted', params ? `parametersRef ${params.kind}/${params.name} is not supported` : 'handled by meshd', gen),
      cond('SupportedVersion', true, 'SupportedVersion', 'Gateway API v1', gen),
    ]);
    if (!params) ours.add(gc.metadata.name);
  }

  const secrets = new Map<string, ModelSecret>();
  const gws = new Map<string, { gw: Gateway; listeners: ListenerState[]; addresses: string[]; addressProblem?: string }>();
  for (const gw of [...input.gateways].sort((a, b) => key(a).localeCompare(key(b)))) {
    if (!ours.has(gw.spec.gatewayClassName)) continue;
    const listeners = ingestListeners(ctx, gw, secrets);
    const a = gatewayAddresses(ctx, gw);
    gws.set(key(gw), { gw, listeners, ...a });
  }

  const views = [...input.httpRoutes.map((r) => httpRouteView(ctx, r)), ...input.grpcRoutes.map((r) => grpcRouteView(ctx, r))];
  for (const rv of views) {
    const entries: RouteParentStatus[] = [];
    for (const pr of rv.parentRefs) {
      if (pr.group !== GATEWAY_GROUP || pr.kind !== 'Gateway') continue;
      const g = gws.get(`${pr.namespace ?? rv.namespace}/${pr.name}`);
      if (!g) continue;
      entries.push({ parentRef: pr, conditions: attach(ctx, rv, pr, g.gw, g.listeners) });
    }
    if (entries.length > 0) status.routes.set(`${rv.kind}/${rv.namespace}/${rv.name}`, entries);
  }

  const gateways: ModelGateway[] = [];
  // Two Gateways on one address and port (the node's address without LB IPAM, say) cannot both be served: one
  // Envoy listener per address and port. The older Gateway keeps it; the other's listeners there are not programmed.
  const taken = new Map<string, string>();
  const byAge = [...gws].sort(([ka, a], [kb, b]) => (a.gw.metadata.creationTimestamp ?? '').localeCompare(b.gw.metadata.creationTimestamp ?? '') || ka.localeCompare(kb));
  for (const [k, g] of byAge) {
    const gen = g.gw.metadata.generation;
    for (const l of g.listeners.filter((x) => x.programmable)) {
      const owner = g.addresses.map((a) => taken.get(`${a}|${l.l.port}`)).find((o) => o !== undefined && o !== k);
      if (owner === undefined) continue;
      l.programmable = false;
      l.status.conditions = l.status.conditions.map((c) => (c.type === 'Programmed' ? cond('Programmed', false, 'Invalid', `port ${l.l.port} on this address is served by Gateway ${owner}`, gen) : c));
    }
    for (const l of g.listeners.filter((x) => x.programmable)) for (const a of g.addresses) taken.set(`${a}|${l.l.port}`, k);
    const programmed = g.listeners.filter((l) => l.programmable);
    const anyAccepted = g.listeners.some((l) => l.attachable);
    const allValid = g.listeners.every((l) => l.programmable);
    const conditions: ModelCondition[] = [];
    if (g.addressProblem) conditions.push(cond('Accepted', false, 'UnsupportedAddress', g.addressProblem, gen));
    else conditions.push(cond('Accepted', anyAccepted, allValid ? 'Accepted' : 'ListenersNotValid', allValid ? 'gateway accepted' : 'some listeners are not valid: see their conditions', gen));
    const served = !g.addressProblem && g.addresses.length > 0 && programmed.length > 0;
    conditions.push(cond('Programmed', served, served ? 'Programmed' : g.addressProblem ? 'AddressNotUsable' : g.addresses.length === 0 ? 'AddressNotAssigned' : 'Invalid', served ? 'served by the node\'s Envoy' : g.addresses.length === 0 ? 'no address yet' : 'nothing to serve', gen));
    const gs: GatewayStatus = { addresses: g.addresses.map((value) => ({ type: 'IPAddress', value })), conditions, listeners: g.listeners.map((l) => l.status) };
    status.gateways.set(k, gs);
    if (served) gateways.push({ key: k, namespace: g.gw.metadata.namespace, name: g.gw.metadata.name, addresses: g.addresses, ports: portsOf(g.gw, programmed) });
  }
  gateways.sort((a, b) => a.key.localeCompare(b.key));
  for (const [k, p] of [...ctx.policies].sort(([a], [b]) => a.localeCompare(b))) {
    status.backendTlsPolicies.set(k, { ancestors: [...p.ancestors.values()], conditions: p.conditions });
  }
  status.gateways = new Map([...status.gateways].sort(([a], [b]) => a.localeCompare(b)));
  return {
    gateways,
    clusters: [...ctx.clusters.values()].sort((a, b) => a.name.localeCompare(b.name)),
    secrets: [...secrets.values()].sort((a, b) => a.name.localeCompare(b.name)),
    status,
  };
}

const key = (o: { metadata: { namespace: string; name: string } }): string => `${o.metadata.namespace}/${o.metadata.name}`;

function gatewayAddresses(ctx: Ctx, gw: Gateway): { addresses: string[]; addressProblem?: string } {
  const requested = gw.spec.addresses ?? [];
  if (requested.length > 0) {
    const bad = requested.find((a) => a.type !== 'IPAddress' || isIP(a.value) === 0);
    if (bad) return { addresses: [], addressProblem: `address ${bad.type} ${bad.value} is not supported (IPAddress only)` };
    return { addresses: [...new Set(requested.map((a) => a.value))] };
  }
  const svc = ctx.services.get(`${gw.metadata.namespace}/${gatewayServiceName(gw.metadata.name)}`);
  const lb = (svc?.status?.loadBalancer?.ingress ?? []).flatMap((i) => (i.ip ? [i.ip] : []));
  return { addresses: [...new Set(lb.length > 0 ? lb : ctx.input.nodeAddresses)] };
}

/** Attaches a route to the listeners of one parentRef; returns that parent's conditions. */
function attach(ctx: Ctx, rv: RouteView, pr: ParentRef, gw: Gateway, listeners: ListenerState[]): ModelCondition[] {
  const gen = rv.generation;
  let candidates = listeners;
  if (pr.sectionName !== undefined) candidates = candidates.filter((l) => l.l.name === pr.sectionName);
  if (pr.port !== undefined) candidates = candidates.filter((l) => l.l.port === pr.port);
  const refs = rv.rules.find((r) => r.refProblem)?.refProblem;
  const resolved = cond('ResolvedRefs', !refs, refs?.reason ?? 'ResolvedRefs', refs?.message ?? 'references resolved', gen);
  if (candidates.length === 0) return [cond('Accepted', false, 'NoMatchingParent', `no listener${pr.sectionName ? ` named ${pr.sectionName}` : ''}${pr.port ? ` on port ${pr.port}` : ''}`, gen), resolved];
  const nsLabels = ctx.namespaces.get(rv.namespace)?.metadata.labels ?? {};
  const allowed = candidates.filter((l) => {
    if (!l.attachable) return false;
    const from = l.l.allowedRoutes.namespaces.from;
    const nsOk = from === 'All' || (from === 'Same' && rv.namespace === gw.metadata.namespace) || (from === 'Selector' && matchSelector(l.l.allowedRoutes.namespaces.selector ?? {}, nsLabels));
    return nsOk && l.allowedKinds.some((k) => k.kind === rv.kind);
  });
  if (allowed.length === 0) return [cond('Accepted', false, 'NotAllowedByListeners', 'no listener of the parent allows this route (namespace or kind)', gen), resolved];
  const matched = allowed.map((l) => ({ l, hosts: intersectHostnames(l.l.hostname, rv.hostnames) })).filter((x) => x.hosts.length > 0);
  if (matched.length === 0) return [cond('Accepted', false, 'NoMatchingListenerHostname', 'no listener hostname intersects the route\'s hostnames', gen), resolved];
  const good = rv.rules.filter((r) => !r.problem);
  const dropped = rv.rules.find((r) => r.problem);
  if (good.length === 0) return [cond('Accepted', false, 'UnsupportedValue', dropped?.problem ?? 'no rules', gen), resolved];
  // The Gateway is an ancestor of the BackendTLSPolicies of the backends this route uses.
  for (const cl of ctx.routeClusters.get(`${rv.kind}/${rv.namespace}/${rv.name}`) ?? []) {
    const pk = ctx.clusterPolicy.get(cl);
    if (pk) ctx.policies.get(pk)?.ancestors.set(`${gw.metadata.namespace}/${gw.metadata.name}`, { group: GATEWAY_GROUP, kind: 'Gateway', namespace: gw.metadata.namespace, name: gw.metadata.name });
  }
  for (const { l, hosts } of matched) {
    l.status.attachedRoutes += 1;
    if (!l.programmable) continue;
    for (const h of hosts) {
      const list = l.hosts.get(h) ?? [];
      rv.rules.forEach((rule, i) =>
        rule.routes.forEach((r, j) => {
          const route = { ...r, name: `${rv.kind}/${rv.namespace}/${rv.name}/rule/${i}/match/${j}`, order: [rv.created, `${rv.namespace}/${rv.name}`, i * 1000 + j] as [string, string, number] };
          list.push(route);
        }),
      );
      l.hosts.set(h, list);
    }
  }
  const out = [cond('Accepted', true, 'Accepted', 'accepted', gen), resolved];
  if (dropped) out.push({ ...cond('PartiallyInvalid', true, 'UnsupportedValue', `rules dropped: ${dropped.problem ?? ''}`, gen) });
  return out;
}

/** Does virtual host domain `wide` ("*", "*.suffix") also take requests for domain `d`? */
const hostCovers = (wide: string, d: string): boolean => wide === '*' || (isWild(wide) && covers(wide, isWild(d) ? d.slice(2) : d));

/** How specifically a listener hostname matches a request hostname: exact > longer wildcard > shorter wildcard > none; -1 when it does not. */
function listenerSpecificity(listener: string | undefined, host: string): number {
  if (listener === undefined) return 0;
  if (listener === host) return 100_000;
  const h = isWild(host) ? host.slice(2) : host;
  return isWild(listener) && covers(listener, h) ? listener.length : -1;
}

function portsOf(gw: Gateway, listeners: ListenerState[]): ModelPort[] {
  const ns = gw.metadata.namespace;
  const byPort = new Map<number, ListenerState[]>();
  for (const l of listeners) byPort.set(l.l.port, [...(byPort.get(l.l.port) ?? []), l]);
  return [...byPort.entries()]
    .sort(([a], [b]) => a - b)
    .map(([port, ls]): ModelPort => {
      const protocol = ls[0]?.l.protocol === 'HTTPS' ? 'HTTPS' : 'HTTP';
      const name = listenerName(ns, gw.metadata.name, port);
      const vhosts = (sets: ListenerState[]) => {
        const hosts = new Map<string, ModelRoute[]>();
        for (const l of sets) {
          for (const [h, rs] of l.hosts) {
            // A request is served by the most specific listener whose hostname matches it (spec: listener hostname matching).
            const best = Math.max(...sets.map((o) => listenerSpecificity(o.l.hostname, h)));
            if (listenerSpecificity(l.l.hostname, h) < best) continue;
            const have = hosts.get(h) ?? [];
            hosts.set(h, [...have, ...rs.filter((r) => !have.some((x) => x.name === r.name))]);
          }
        }
        // A request's host may match several routes' hostnames: the more specific hostname's rules first (the
        // spec's first precedence criteria), then those of each wildcard that covers it, then those for any host.
        const sorted = (rs: ModelRoute[]) => [...(rs as Array<ModelRoute & { order: [string, string, number] }>)].sort(precedence).map(({ order: _o, ...r }) => r);
        const domains = [...hosts.keys()].sort((a, b) => a.localeCompare(b));
        return domains.map((domain) => {
          const wider = domains.filter((d) => d !== domain && hostCovers(d, domain)).sort((a, b) => b.length - a.length);
          const routes: ModelRoute[] = [];
          for (const d of [domain, ...wider]) for (const r of sorted(hosts.get(d) ?? [])) if (!routes.some((x) => x.name === r.name)) routes.push(r);
          return { domain, routes };
        });
      };
      const chains: ModelChain[] =
        protocol === 'HTTP'
          ? [{ routeConfig: name, serverNames: [], certificates: [], virtualHosts: vhosts(ls) }]
          : ls.map((l) => ({ routeConfig: `${name}/${l.l.name}`, serverNames: l.l.hostname ? [l.l.hostname] : [], certificates: l.certificates, virtualHosts: vhosts([l]) }));
      return { port, listener: name, protocol, chains };
    });
}
