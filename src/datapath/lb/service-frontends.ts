/**
 * One Service and its EndpointSlices → the frontends the socket LB must hold:
 * every (VIP, port, protocol) a client may connect to (cluster IPs, external
 * IPs, load-balancer ingress IPs, node IPs × nodePort) with its backends.
 * Pure: no maps, no kernel. The reconciler (lb-reconciler.ts) writes the result.
 */
import { Backend, LB_F_AFFINITY, LB_F_MAGLEV, PROTO_TCP, PROTO_UDP, Scope, type ScopeNumber, encodeAddr, ipFamily } from './lb-maps.js';
import type { EndpointSlice } from '../../k8s/endpoint-slice.js';
import { DEFAULT_AFFINITY_TIMEOUT, GATEWAY_NAME_LABEL, LB_ALGORITHM_ANNOTATION, type Service } from '../../k8s/service.js';

export interface DesiredBackend {
  /** Identity and map value in one: hex of the encoded struct meshd_lb_backend. */
  key: string;
  /** "addr:port/proto", for logs and Maglev. */
  name: string;
  value: Buffer;
}

export interface DesiredFrontend {
  /** "addrhex|port|proto": one service entry in the map. */
  key: string;
  addr: Buffer;
  ip: string;
  port: number;
  proto: number;
  scope: ScopeNumber;
  flags: number;
  affinityTimeout: number;
  /** Sorted by key, de-duplicated, capped. */
  backends: DesiredBackend[];
}

export interface FrontendOptions {
  /** Node addresses that NodePort services listen on. */
  nodeIPs: readonly string[];
  algorithm: 'random' | 'maglev';
  maxBackendsPerService: number;
  /** This node's name: with externalTrafficPolicy Local, the external frontends keep only endpoints on it. */
  nodeName?: string;
}

export interface FrontendResult {
  frontends: DesiredFrontend[];
  /** Frontends whose backend list was cut to maxBackendsPerService: [frontend name, how many there were]. */
  capped: Array<[string, number]>;
  /** Ports skipped (SCTP, ExternalName...), with why. */
  skipped: string[];
}

export const frontendKey = (addr: Buffer, port: number, proto: number): string => `${addr.toString('hex')}|${port}|${proto}`;

const protoNumber = (p: string): number | null => (p === 'TCP' ? PROTO_TCP : p === 'UDP' ? PROTO_UDP : null);

export function serviceFrontends(svc: Service, slices: readonly EndpointSlice[], opts: FrontendOptions): FrontendResult {
  const out: FrontendResult = { frontends: [], capped: [], skipped: [] };
  if (svc.spec.type === 'ExternalName') {
    out.skipped.push('type ExternalName has no frontends');
    return out;
  }
  const algo = svc.metadata.annotations?.[LB_ALGORITHM_ANNOTATION] ?? opts.algorithm;
  const affinity = svc.spec.sessionAffinity === 'ClientIP';
  const flags = (affinity ? LB_F_AFFINITY : 0) | (algo === 'maglev' ? LB_F_MAGLEV : 0);
  const timeout = affinity ? (svc.spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT) : 0;

  // A Gateway's Service (src/gateway/controller.ts: no selector, so no backends) only carries the Gateway's
  // LoadBalancer address: connections to that address go to the Envoy listener bound on it. As a socket-LB
  // frontend without backends it would refuse every host process's connect() to the Gateway.
  const gatewayService = svc.metadata.labels?.[GATEWAY_NAME_LABEL] !== undefined && svc.spec.selector === undefined;
  const clusterIPs = (svc.spec.clusterIPs ?? (svc.spec.clusterIP ? [svc.spec.clusterIP] : [])).filter((ip) => ip !== 'None' && ip !== '');
  const vips: Array<[string, ScopeNumber]> = [
    ...clusterIPs.map((ip): [string, ScopeNumber] => [ip, Scope.ClusterIP]),
    ...(svc.spec.externalIPs ?? []).map((ip): [string, ScopeNumber] => [ip, Scope.ExternalIP]),
    ...(gatewayService ? [] : (svc.status?.loadBalancer?.ingress ?? []).flatMap((i): Array<[string, ScopeNumber]> => (i.ip ? [[i.ip, Scope.LoadBalancer]] : []))),
  ];
  if (gatewayService && (svc.status?.loadBalancer?.ingress ?? []).length > 0) {
    out.skipped.push('status.loadBalancer.ingress: a Gateway\'s addresses are served by the node\'s Envoy listeners, not balanced at the socket layer');
  }
  const nodePorts = svc.spec.type === 'NodePort' || svc.spec.type === 'LoadBalancer';

  for (const [pi, p] of svc.spec.ports.entries()) {
    const proto = protoNumber(p.protocol);
    if (proto === null) {
      out.skipped.push(`spec.ports[${pi}]: protocol ${p.protocol} is not balanced at the socket layer`);
      continue;
    }
    const byFamily = { '4': new Map<string, DesiredBackend>(), '6': new Map<string, DesiredBackend>() };
    const local = new Set<string>(); // keys of the backends on this node
    for (const slice of slices) {
      if (slice.addressType === 'FQDN') continue;
      const sp = slice.ports.find((x) => (x.name ?? '') === (p.name ?? '') && x.protocol === p.protocol);
      if (!sp) continue;
      for (const ep of slice.endpoints) {
        // Kubernetes: a nil "ready" means ready; terminating endpoints are not sent new connections.
        if (ep.conditions?.ready === false || ep.conditions?.terminating === true) continue;
        for (const a of ep.addresses) {
          const fam = ipFamily(a);
          if (!fam) continue;
          const value = Backend.encode({ addr: encodeAddr(a), port: sp.port, proto, pad: 0 });
          const key = value.toString('hex');
          byFamily[fam].set(key, { key, name: `${a}:${sp.port}/${p.protocol}`, value });
          if (ep.nodeName !== undefined && ep.nodeName === opts.nodeName) local.add(key);
        }
      }
    }
    const add = (ip: string, port: number, scope: ScopeNumber) => {
      const fam = ipFamily(ip);
      if (!fam) return;
      const externalLocal = scope !== Scope.ClusterIP && svc.spec.externalTrafficPolicy === 'Local';
      let backends = [...byFamily[fam].values()].filter((b) => !externalLocal || local.has(b.key)).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      const name = `${ip}:${port}/${p.protocol}`;
      if (backends.length > opts.maxBackendsPerService) {
        out.capped.push([name, backends.length]);
        backends = backends.slice(0, opts.maxBackendsPerService);
      }
      const addr = encodeAddr(ip);
      out.frontends.push({ key: frontendKey(addr, port, proto), addr, ip, port, proto, scope, flags, affinityTimeout: timeout, backends });
    };
    for (const [ip, scope] of vips) add(ip, p.port, scope);
    if (nodePorts && p.nodePort !== undefined) for (const ip of opts.nodeIPs) add(ip, p.nodePort, Scope.NodePort);
  }
  return out;
}
