/**
 * The status objects meshd writes, computed from the model's conditions
 * (ingestion.ts) and the objects' current status: conditions keep their
 * lastTransitionTime while their status does not change, a condition of a
 * type meshd does not set (CONDITION_TYPES) is kept as it is, a route's
 * status.parents keeps the entries of other controllers, and a write is
 * needed only when something meshd owns differs (`statusPatches` returns
 * nothing for an unchanged object).
 *
 *   for (const p of statusPatches(model.status, objects, CONTROLLER_NAME, now)) await client.send('PATCH', p.path, p.body);
 */
import type { Condition } from '../k8s/gateway-api-common.js';
import type { BackendTlsPolicy } from '../k8s/backend-tls-policy.js';
import type { Gateway } from '../k8s/gateway.js';
import type { GatewayClass } from '../k8s/gateway-class.js';
import type { GrpcRoute } from '../k8s/grpc-route.js';
import type { HttpRoute } from '../k8s/http-route.js';
import { CONDITION_TYPES, type ModelCondition, type ModelStatus } from './model.js';

export interface StatusObjects {
  gatewayClasses: readonly GatewayClass[];
  gateways: readonly Gateway[];
  httpRoutes: readonly HttpRoute[];
  grpcRoutes: readonly GrpcRoute[];
  backendTlsPolicies?: readonly BackendTlsPolicy[];
}

export interface StatusPatch {
  /** "GatewayClass/name", "Gateway/ns/name", "HTTPRoute/ns/name". */
  object: string;
  /** The status subresource. */
  path: string;
  /** A JSON merge patch (carries the resourceVersion it was computed from: a changed object is refused with 409). */
  body: { metadata: { resourceVersion?: string }; status: Record<string, unknown> };
}

const API = '/apis/gateway.networking.k8s.io/v1';

const OWN_TYPES: ReadonlySet<string> = new Set(CONDITION_TYPES);
const isOwn = (c: Condition): boolean => OWN_TYPES.has(c.type);

/**
 * meshd's conditions (keeping lastTransitionTime while the status holds) followed by
 * the conditions of other controllers' types, unchanged: a status write replaces the
 * whole list, so leaving those out would delete them.
 */
function conditions(prev: readonly Condition[], next: readonly ModelCondition[], now: string): Condition[] {
  const own = next.map((c) => {
    const old = prev.find((p) => p.type === c.type);
    return { ...c, lastTransitionTime: old && old.status === c.status && old.lastTransitionTime ? old.lastTransitionTime : now };
  });
  return [...own, ...prev.filter((c) => !isOwn(c))];
}

/** Whether the conditions of meshd's types in `a` are `b` (others' conditions do not count). */
function sameConditions(all: readonly Condition[], b: readonly ModelCondition[]): boolean {
  const a = all.filter(isOwn);
  return a.length === b.length && b.every((c) => a.some((x) => x.type === c.type && x.status === c.status && x.reason === c.reason && x.message === c.message && x.observedGeneration === c.observedGeneration));
}

/** After a NACK: every Gateway is not Programmed, with Envoy's message (what it served before stays served). */
export function withNack(s: ModelStatus, message: string): ModelStatus {
  const gateways = new Map(
    [...s.gateways].map(([k, g]) => [
      k,
      { ...g, conditions: g.conditions.map((c) => (c.type === 'Programmed' ? { ...c, status: 'False' as const, reason: 'Invalid', message: `Envoy rejected the configuration: ${message}` } : c)) },
    ]),
  );
  return { ...s, gateways };
}

export function statusPatches(s: ModelStatus, o: StatusObjects, controllerName: string, now: string): StatusPatch[] {
  const out: StatusPatch[] = [];
  const rv = (m: { resourceVersion?: string | undefined }) => (m.resourceVersion ? { resourceVersion: m.resourceVersion } : {});
  for (const gc of o.gatewayClasses) {
    const want = s.gatewayClasses.get(gc.metadata.name);
    if (!want) continue;
    const have = gc.status?.conditions ?? [];
    if (sameConditions(have, want)) continue;
    out.push({ object: `GatewayClass/${gc.metadata.name}`, path: `${API}/gatewayclasses/${gc.metadata.name}/status`, body: { metadata: rv(gc.metadata), status: { conditions: conditions(have, want, now) } } });
  }
  for (const gw of o.gateways) {
    const k = `${gw.metadata.namespace}/${gw.metadata.name}`;
    const want = s.gateways.get(k);
    if (!want) continue;
    const have = gw.status;
    const haveListeners = have?.listeners ?? [];
    const same =
      sameConditions(have?.conditions ?? [], want.conditions) &&
      JSON.stringify(have?.addresses ?? []) === JSON.stringify(want.addresses) &&
      haveListeners.length === want.listeners.length &&
      want.listeners.every((l, i) => {
        const h = haveListeners[i];
        return h !== undefined && h.name === l.name && h.attachedRoutes === l.attachedRoutes && JSON.stringify(h.supportedKinds.map((x) => x.kind)) === JSON.stringify(l.supportedKinds.map((x) => x.kind)) && sameConditions(h.conditions, l.conditions);
      });
    if (same) continue;
    const status = {
      addresses: want.addresses,
      conditions: conditions(have?.conditions ?? [], want.conditions, now),
      listeners: want.listeners.map((l) => ({ ...l, conditions: conditions(haveListeners.find((h) => h.name === l.name)?.conditions ?? [], l.conditions, now) })),
    };
    out.push({ object: `Gateway/${k}`, path: `${API}/namespaces/${gw.metadata.namespace}/gateways/${gw.metadata.name}/status`, body: { metadata: rv(gw.metadata), status } });
  }
  const routes = [...o.httpRoutes.map((r) => ({ r, plural: 'httproutes' })), ...o.grpcRoutes.map((r) => ({ r, plural: 'grpcroutes' }))];
  for (const { r, plural } of routes) {
    const k = `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;
    const want = s.routes.get(k) ?? [];
    const have = r.status?.parents ?? [];
    const mine = have.filter((p) => p.controllerName === controllerName);
    const same = mine.length === want.length && want.every((w, i) => JSON.stringify(mine[i]?.parentRef) === JSON.stringify(w.parentRef) && sameConditions(mine[i]?.conditions ?? [], w.conditions));
    if (same) continue;
    const parents = [
      ...have.filter((p) => p.controllerName !== controllerName),
      ...want.map((w) => ({ parentRef: w.parentRef, controllerName, conditions: conditions(mine.find((m) => JSON.stringify(m.parentRef) === JSON.stringify(w.parentRef))?.conditions ?? [], w.conditions, now) })),
    ];
    out.push({ object: k, path: `${API}/namespaces/${r.metadata.namespace}/${plural}/${r.metadata.name}/status`, body: { metadata: rv(r.metadata), status: { parents } } });
  }
  for (const p of o.backendTlsPolicies ?? []) {
    const k = `${p.metadata.namespace}/${p.metadata.name}`;
    const want = s.backendTlsPolicies.get(k);
    const have = p.status?.ancestors ?? [];
    const mine = have.filter((a) => a.controllerName === controllerName);
    const wantAncestors = want ? want.ancestors.map((ancestorRef) => ({ ancestorRef, conditions: want.conditions })) : [];
    const same = mine.length === wantAncestors.length && wantAncestors.every((w, i) => JSON.stringify(mine[i]?.ancestorRef) === JSON.stringify(w.ancestorRef) && sameConditions(mine[i]?.conditions ?? [], w.conditions));
    if (same) continue;
    const ancestors = [
      ...have.filter((a) => a.controllerName !== controllerName),
      ...wantAncestors.map((w) => ({ ancestorRef: w.ancestorRef, controllerName, conditions: conditions(mine.find((m) => JSON.stringify(m.ancestorRef) === JSON.stringify(w.ancestorRef))?.conditions ?? [], w.conditions, now) })),
    ];
    out.push({ object: `BackendTLSPolicy/${k}`, path: `${API}/namespaces/${p.metadata.namespace}/backendtlspolicies/${p.metadata.name}/status`, body: { metadata: rv(p.metadata), status: { ancestors } } });
  }
  return out;
}
