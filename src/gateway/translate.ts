/**
 * Translation: the model (ingestion.ts) → Envoy resources, one translator
 * per resource type (translate-listener.ts, translate-route.ts,
 * translate-cluster.ts) and the certificates as SDS secrets. Pure; the
 * golden tests (translate.test.ts) pin its output per feature.
 *
 *   const res = translate(ingest(input), { accessLog: true });
 *   res.listeners; res.routes; res.clusters; res.endpoints; res.secrets
 */
import { buildGatewayCluster, buildLoadAssignment } from './translate-cluster.js';
import { buildGatewayListener } from './translate-listener.js';
import { buildRouteConfiguration } from './translate-route.js';
import type { GatewayModel } from './model.js';

type Json = Record<string, unknown>;

export interface GatewayResources {
  listeners: Json[];
  routes: Json[];
  clusters: Json[];
  endpoints: Json[];
  secrets: Json[];
}

export const EMPTY_GATEWAY_RESOURCES: GatewayResources = { listeners: [], routes: [], clusters: [], endpoints: [], secrets: [] };

export function translate(model: GatewayModel, o: { accessLog: boolean } = { accessLog: false }): GatewayResources {
  const listeners: Json[] = [];
  const routes: Json[] = [];
  for (const gw of model.gateways) {
    for (const p of gw.ports) {
      listeners.push(buildGatewayListener(gw, p, o));
      for (const c of p.chains) routes.push(buildRouteConfiguration(c, p));
    }
  }
  return {
    listeners,
    routes,
    clusters: model.clusters.map(buildGatewayCluster),
    endpoints: model.clusters.map(buildLoadAssignment),
    secrets: model.secrets.map((s) => ({
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
      name: s.name,
      tls_certificate: { certificate_chain: { inline_string: s.certificateChain }, private_key: { inline_string: s.privateKey } },
    })),
  };
}
