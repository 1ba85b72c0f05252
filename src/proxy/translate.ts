/**
 * Policy → Envoy resources for the node's proxy.
 *
 * Input: the policy engine's EndpointPolicy for each local endpoint (with the
 * endpoint's addresses) and the ipcache's identity → addresses. Output: one
 * listener per (L7 protocol, direction) that has any REDIRECT entry, each
 * with one filter chain per endpoint, plus the original-destination cluster;
 * and the list of redirects the datapath must program (endpoint, direction,
 * proxy port) once Envoy has ACKed these listeners.
 *
 * HTTP is enforced here. A REDIRECT entry for another L7 protocol is not
 * dropped silently: it is returned in `unsupported`, so the caller can report
 * it (and the datapath keeps such flows denied rather than unfiltered).
 */
import type { Direction, EndpointPolicy, L7Kind, PolicyEntry } from '../policy/types.js';
import { buildOriginalDstCluster } from './cluster.js';
import { buildHttpConnectionManager } from './http-connection-manager.js';
import { buildFilterChain, buildListener } from './listener.js';
import { buildRbac } from './rbac.js';

type Json = Record<string, unknown>;

export interface L7Endpoint {
  policy: EndpointPolicy;
  ips: readonly string[];
}

export interface TranslateInput {
  endpoints: readonly L7Endpoint[];
  identityIps: ReadonlyMap<number, readonly string[]>;
  ports: { portFor(kind: L7Kind, direction: Direction): number };
  accessLog?: boolean;
  originalSrcMark?: number;
}

export interface Redirect {
  endpointId: string;
  direction: Direction;
  kind: L7Kind;
  proxyPort: number;
}

export interface TranslateOutput {
  listeners: Json[];
  clusters: Json[];
  redirects: Redirect[];
  unsupported: Array<{ endpointId: string; direction: Direction; kind: L7Kind; derivedFrom: string[] }>;
}

export const SUPPORTED_L7: ReadonlySet<L7Kind> = new Set<L7Kind>(['http']);

export function listenerName(kind: L7Kind, direction: Direction): string {
  return `meshd-${kind}-${direction}`;
}

export function translateL7(input: TranslateInput): TranslateOutput {
  const chains = new Map<string, { kind: L7Kind; direction: Direction; chains: Json[] }>();
  const redirects: Redirect[] = [];
  const unsupported: TranslateOutput['unsupported'] = [];
  const endpoints = [...input.endpoints].sort((a, b) => a.policy.endpointId.localeCompare(b.policy.endpointId));

  for (const ep of endpoints) {
    for (const direction of ['ingress', 'egress'] as const) {
      const byKind = new Map<L7Kind, PolicyEntry[]>();
      for (const e of ep.policy[direction].entries) {
        if (e.verdict !== 'REDIRECT' || !e.l7) continue;
        const list = byKind.get(e.l7.kind) ?? [];
        list.push(e);
        byKind.set(e.l7.kind, list);
      }
      for (const [kind, entries] of byKind) {
        if (!SUPPORTED_L7.has(kind)) {
          unsupported.push({ endpointId: ep.policy.endpointId, direction, kind, derivedFrom: [...new Set(entries.flatMap((e) => e.derivedFrom))].sort() });
          continue;
        }
        const name = listenerName(kind, direction);
        const group = chains.get(name) ?? { kind, direction, chains: [] };
        const statPrefix = `${ep.policy.endpointId.replace(/[^A-Za-z0-9_.-]/g, '_')}_${direction}`;
        const hcm = buildHttpConnectionManager({
          statPrefix,
          rbac: buildRbac({ direction, entries, identityIps: input.identityIps }),
          accessLog: input.accessLog ?? false,
        });
        group.chains.push(
          buildFilterChain({
            name: `${ep.policy.endpointId}/${direction}`,
            direction,
            endpointIps: ep.ips,
            networkFilters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }],
          }),
        );
        chains.set(name, group);
        redirects.push({ endpointId: ep.policy.endpointId, direction, kind, proxyPort: input.ports.portFor(kind, direction) });
      }
    }
  }

  const listeners = [...chains.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, g]) => {
      const l: Parameters<typeof buildListener>[0] = { name, port: input.ports.portFor(g.kind, g.direction), filterChains: g.chains };
      if (input.originalSrcMark !== undefined) l.originalSrcMark = input.originalSrcMark;
      return buildListener(l);
    });
  return { listeners, clusters: listeners.length > 0 ? [buildOriginalDstCluster()] : [], redirects, unsupported };
}
