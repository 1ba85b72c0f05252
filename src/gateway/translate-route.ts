/**
 * Gateway routes as Envoy route configurations (RDS): one per HTTP port (or
 * per HTTPS listener), one virtual host per hostname, routes in the spec's
 * precedence order (the model is already sorted), each match one Envoy
 * route.
 *
 * How the spec's semantics map:
 * - PathPrefix matches whole path elements (`/foo` matches `/foo/bar`, not
 *   `/foobar`): Envoy's path_separated_prefix; `/` is a plain prefix.
 * - A backend that is invalid (missing, not granted, wrong kind) answers 500
 *   for its share of the weight: its weighted entry names a cluster that does
 *   not exist, and cluster_not_found_response_code is 500. A rule with no
 *   usable backend at all answers 500 directly.
 * - Header modifiers: `set` overwrites, `add` appends, `remove` removes.
 */
import type { HeaderModifier } from '../k8s/gateway-api-common.js';
import type { ModelBackend, ModelChain, ModelRoute, ValueMatch } from './model.js';

type Json = Record<string, unknown>;

/** A cluster name no resource has: routes to an invalid backend (answered with 500). */
export const INVALID_BACKEND_CLUSTER = 'meshd-gateway-invalid-backend';

const REDIRECT_CODES: Record<number, string> = { 301: 'MOVED_PERMANENTLY', 302: 'FOUND', 303: 'SEE_OTHER', 307: 'TEMPORARY_REDIRECT', 308: 'PERMANENT_REDIRECT' };

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const seconds = (ms: number): string => `${ms / 1000}s`;

function stringMatch(m: { type: 'Exact' | 'RegularExpression'; value: string }): Json {
  return m.type === 'Exact' ? { exact: m.value } : { safe_regex: { regex: m.value } };
}

function routeMatch(r: ModelRoute): Json {
  const p = r.match.path;
  const out: Json = {};
  if (p.type === 'Exact') out.path = p.value;
  else if (p.type === 'RegularExpression') out.safe_regex = { regex: p.value };
  else {
    const v = p.value.replace(/\/+$/, '');
    if (v === '') out.prefix = '/';
    else out.path_separated_prefix = v;
  }
  const headers: Json[] = r.match.headers.map((h: ValueMatch) => ({ name: h.name.toLowerCase(), string_match: stringMatch(h) }));
  if (r.match.method) headers.push({ name: ':method', string_match: { exact: r.match.method } });
  if (headers.length > 0) out.headers = headers;
  if (r.match.queryParams.length > 0) out.query_parameters = r.match.queryParams.map((q) => ({ name: q.name, string_match: stringMatch(q) }));
  if (r.match.grpc) out.grpc = {};
  return out;
}

/** Header modifier → Envoy's *_headers_to_add / *_headers_to_remove under `prefix` ("request" or "response"). */
function headerOps(h: HeaderModifier | undefined, prefix: 'request' | 'response'): Json {
  if (!h) return {};
  const add = [
    ...(h.set ?? []).map((x) => ({ header: { key: x.name, value: x.value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' })),
    ...(h.add ?? []).map((x) => ({ header: { key: x.name, value: x.value }, append_action: 'APPEND_IF_EXISTS_OR_ADD' })),
  ];
  return { ...(add.length > 0 ? { [`${prefix}_headers_to_add`]: add } : {}), ...(h.remove && h.remove.length > 0 ? { [`${prefix}_headers_to_remove`]: h.remove } : {}) };
}

/** The prefix rewrite for ReplacePrefixMatch on the route's own prefix. */
function prefixRewrite(r: ModelRoute, value: string): Json {
  const prefix = r.match.path.value.replace(/\/+$/, '');
  if (value === '/' || value === '') return { regex_rewrite: { pattern: { regex: `^${escapeRe(prefix)}/*` }, substitution: '/' } };
  return { regex_rewrite: { pattern: { regex: `^${escapeRe(prefix)}` }, substitution: value.replace(/\/+$/, '') } };
}

/** The listener a route configuration serves (a redirect without port or scheme keeps the listener's port). */
export interface RouteListener {
  port: number;
  protocol: 'HTTP' | 'HTTPS';
}

function action(r: ModelRoute, l: RouteListener): Json {
  if (r.redirect) {
    const d = r.redirect;
    const redirect: Json = { response_code: REDIRECT_CODES[d.statusCode] ?? 'FOUND' };
    if (d.scheme) redirect.scheme_redirect = d.scheme;
    if (d.hostname) redirect.host_redirect = d.hostname;
    if (d.port) redirect.port_redirect = d.port;
    // Spec: without port and scheme the Location keeps the listener's port (omitted when it is the scheme's
    // well-known one); Envoy would drop it when it rewrites the host. With a scheme Envoy omits the port itself.
    else if (!d.scheme && d.hostname && l.port !== (l.protocol === 'HTTPS' ? 443 : 80)) redirect.port_redirect = l.port;
    if (d.path?.type === 'ReplaceFullPath') redirect.path_redirect = d.path.value;
    if (d.path?.type === 'ReplacePrefixMatch') Object.assign(redirect, prefixRewrite(r, d.path.value));
    return { redirect };
  }
  const live = r.backends.filter((b) => b.weight > 0);
  if (live.length === 0 || live.every((b) => b.cluster === null)) return { direct_response: { status: 500 } };
  const route: Json = {};
  const first = live[0];
  if (live.length === 1 && first && first.cluster !== null && !first.requestHeaders && !first.responseHeaders) route.cluster = first.cluster;
  else {
    route.weighted_clusters = {
      clusters: live.map((b: ModelBackend) => ({ name: b.cluster ?? INVALID_BACKEND_CLUSTER, weight: b.weight, ...headerOps(b.requestHeaders, 'request'), ...headerOps(b.responseHeaders, 'response') })),
    };
    route.cluster_not_found_response_code = 'INTERNAL_SERVER_ERROR';
  }
  if (r.rewrite?.hostname) route.host_rewrite_literal = r.rewrite.hostname;
  if (r.rewrite?.path?.type === 'ReplaceFullPath') route.regex_rewrite = { pattern: { regex: '^/.*$' }, substitution: r.rewrite.path.value };
  if (r.rewrite?.path?.type === 'ReplacePrefixMatch') Object.assign(route, prefixRewrite(r, r.rewrite.path.value));
  if (r.mirrors.length > 0) {
    route.request_mirror_policies = r.mirrors.map((m) => ({ cluster: m.cluster, ...(m.percent < 100 ? { runtime_fraction: { default_value: { numerator: Math.round(m.percent * 10_000), denominator: 'MILLION' } } } : {}) }));
  }
  const t = r.timeouts;
  if (t?.requestMs !== undefined) route.timeout = seconds(t.requestMs);
  else if (t?.backendRequestMs !== undefined) route.timeout = seconds(t.backendRequestMs);
  if (t?.backendRequestMs !== undefined && t.requestMs !== undefined) route.retry_policy = { num_retries: 0, per_try_timeout: seconds(t.backendRequestMs) };
  return { route };
}

export function buildRoute(r: ModelRoute, l: RouteListener): Json {
  return { name: r.name, match: routeMatch(r), ...action(r, l), ...headerOps(r.requestHeaders, 'request'), ...headerOps(r.responseHeaders, 'response') };
}

export function buildRouteConfiguration(c: ModelChain, l: RouteListener): Json {
  return {
    '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
    name: c.routeConfig,
    // A route to a cluster that does not exist is the invalid-backend 500, not a reason to reject the configuration.
    validate_clusters: false,
    virtual_hosts: c.virtualHosts.map((v) => ({ name: `${c.routeConfig}/${v.domain}`, domains: [v.domain], routes: v.routes.map((r) => buildRoute(r, l)) })),
  };
}
