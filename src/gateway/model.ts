/**
 * The Gateway API model: what ingestion (ingestion.ts) makes of the
 * Kubernetes objects and translation (translate.ts) turns into Envoy
 * resources. It holds only what is served (accepted Gateways, their
 * programmable listeners, the route rules attached to them with resolved
 * backends) plus the status every object gets (status.ts writes it).
 *
 * Names here are already the Envoy resource names, so the model is the
 * contract between the two stages and golden files show both.
 */
import type { Condition, HeaderModifier, ParentRef } from '../k8s/gateway-api-common.js';

/** The controllerName meshd answers to in GatewayClasses. */
export const CONTROLLER_NAME = 'meshd.io/gateway-controller';

/**
 * Every condition type meshd sets on a status. A condition of any other type
 * belongs to another controller: the status writer keeps it as it is
 * (Gateway API: an implementation must not remove or modify conditions whose
 * type it is not responsible for).
 */
export const CONDITION_TYPES = ['Accepted', 'Programmed', 'ResolvedRefs', 'Conflicted', 'PartiallyInvalid', 'SupportedVersion'] as const;
export type ConditionType = (typeof CONDITION_TYPES)[number];

/** A condition as computed (lastTransitionTime is the status writer's). */
export type ModelCondition = Omit<Condition, 'lastTransitionTime'> & { type: ConditionType };

export interface ModelGateway {
  /** "namespace/name". */
  key: string;
  namespace: string;
  name: string;
  /** Addresses Envoy binds the Gateway's ports on (and status.addresses reports). */
  addresses: string[];
  /** One Envoy listener per port. */
  ports: ModelPort[];
}

export interface ModelPort {
  port: number;
  /** The Envoy listener's name. */
  listener: string;
  protocol: 'HTTP' | 'HTTPS';
  /** HTTP: one chain for every listener on the port; HTTPS: one chain per listener (by SNI). */
  chains: ModelChain[];
}

export interface ModelChain {
  /** Route configuration name (RDS). */
  routeConfig: string;
  /** SNI names of an HTTPS chain (listener hostname; none = any). */
  serverNames: string[];
  /** SDS secret names of an HTTPS chain's certificates. */
  certificates: string[];
  virtualHosts: ModelVirtualHost[];
}

export interface ModelVirtualHost {
  /** Envoy domains ("*" or a hostname or "*.suffix"). */
  domain: string;
  /** In match order (the spec's precedence). */
  routes: ModelRoute[];
}

export type PathMatch = { type: 'Exact' | 'PathPrefix' | 'RegularExpression'; value: string };
export type ValueMatch = { type: 'Exact' | 'RegularExpression'; name: string; value: string };

export interface ModelMatch {
  path: PathMatch;
  headers: ValueMatch[];
  queryParams: ValueMatch[];
  method?: string;
  /** GRPCRoute: only requests with a gRPC content type. */
  grpc?: boolean;
}

export interface ModelBackend {
  /** Cluster name; null: the backend is invalid (answered with 500, in proportion to its weight). */
  cluster: string | null;
  weight: number;
  requestHeaders?: HeaderModifier;
  responseHeaders?: HeaderModifier;
}

export interface ModelRoute {
  /** "<Kind>/<namespace>/<name>/rule/<i>/match/<j>": the route name in Envoy and in golden files. */
  name: string;
  match: ModelMatch;
  backends: ModelBackend[];
  requestHeaders?: HeaderModifier;
  responseHeaders?: HeaderModifier;
  redirect?: { scheme?: string; hostname?: string; port?: number; statusCode: number; path?: { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; value: string } };
  rewrite?: { hostname?: string; path?: { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; value: string } };
  mirrors: Array<{ cluster: string; percent: number }>;
  /** Milliseconds; 0 = no timeout. */
  timeouts?: { requestMs?: number; backendRequestMs?: number };
}

export interface ModelCluster {
  name: string;
  /** "namespace/service" and the Service port it stands for. */
  service: string;
  port: number;
  http2: boolean;
  endpoints: Array<{ ip: string; port: number }>;
  /** BackendTLSPolicy: connect over TLS, checking the server's certificate for `sni` against the CA. */
  tls?: { sni: string; ca: { pem: string } | { file: string } };
}

export interface ModelSecret {
  name: string;
  certificateChain: string;
  privateKey: string;
}

export interface ListenerStatus {
  name: string;
  attachedRoutes: number;
  supportedKinds: Array<{ group: string; kind: string }>;
  conditions: ModelCondition[];
}

export interface GatewayStatus {
  addresses: Array<{ type: 'IPAddress'; value: string }>;
  conditions: ModelCondition[];
  listeners: ListenerStatus[];
}

export interface RouteParentStatus {
  parentRef: ParentRef;
  conditions: ModelCondition[];
}

export interface ModelStatus {
  /** GatewayClass name → conditions (meshd's classes only). */
  gatewayClasses: Map<string, ModelCondition[]>;
  /** "namespace/name" → status (Gateways of meshd's classes only). */
  gateways: Map<string, GatewayStatus>;
  /** "<Kind>/<namespace>/<name>" → meshd's entries in status.parents. */
  routes: Map<string, RouteParentStatus[]>;
  /** "namespace/name" → the Gateways whose routes use it (status.ancestors) and its conditions (meshd's BackendTLSPolicies in use). */
  backendTlsPolicies: Map<string, { ancestors: ParentRef[]; conditions: ModelCondition[] }>;
}

export interface GatewayModel {
  gateways: ModelGateway[];
  clusters: ModelCluster[];
  secrets: ModelSecret[];
  status: ModelStatus;
}
