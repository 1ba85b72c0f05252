/**
 * The local API's handlers (the CLI's view of the running agent), one per
 * route of src/api. Read-only, except policy trace, which only reads too but
 * takes flows in its body, and fqdn cache flush, which removes FQDN entries.
 *
 * Handlers return the route's schema input, typed by the agent's view
 * methods; the server checks every answer against its schema before sending,
 * so a drift is a MESHD_API_RESPONSE_INVALID naming the field path.
 */
import { parse as parseYaml } from 'yaml';
import { apiRoutes } from '../api/index.js';
import { ApiRequestInvalidError } from '../api/errors.js';
import { issuePaths, routeName } from '../api/route.js';
import { DnsProxyNotRunningError } from '../dns/dns-service.js';
import { scenarioSchema, traceFlow } from '../policy/trace.js';
import { MeshdError } from '../util/errors.js';
import type { Agent } from './agent.js';
import type { ApiServer } from './api-server.js';

export class EndpointNotFoundError extends MeshdError {
  constructor(message: string) {
    super('MESHD_API_ENDPOINT_NOT_FOUND', message, { kind: 'not-found' });
  }
}

const PROTO: Readonly<Record<number, string>> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };

export function registerRoutes(api: ApiServer, agent: Agent): void {
  api.route(apiRoutes.status, () => (agent.status()));
  api.route(apiRoutes.endpoints, () => ({ endpoints: agent.endpointList() }));
  api.route(apiRoutes.endpoint, ({ query }) => {
    const e = agent.endpointList().find((x) => x.id === query.id);
    if (!e) throw new EndpointNotFoundError(`no local endpoint ${query.id}`);
    return ({ ...e, policy: agent.engine.endpointPolicy(query.id) ?? null });
  });
  api.route(apiRoutes.identities, () => ({
    identities: [...agent.engine.allocator.all()].sort((a, b) => a.id - b.id).map((i) => ({ id: i.id, labels: i.labels.toStrings(), scope: i.scope })),
  }));
  api.route(apiRoutes.services, () => {
    const sm = agent.serviceManager();
    return { enabled: sm !== null, status: sm?.status() ?? null, services: agent.engine.serviceList() };
  });
  api.route(apiRoutes.policy, ({ query }) => (agent.policyView(query.endpoint)));
  api.route(apiRoutes.bpfPolicy, ({ query }) => {
    const v = agent.kernelPolicy(query.endpoint);
    if (!v) throw new EndpointNotFoundError(`no endpoint ${query.endpoint} in the datapath`);
    const entries = [...v.entries.values()].map(({ key: k, value }) => {
      const span = k.portBits === 0 ? 0 : 2 ** (16 - k.portBits);
      return {
        direction: k.egress ? ('egress' as const) : ('ingress' as const),
        identity: k.identity,
        protocol: k.anyProto ? 'ANY' : (PROTO[k.proto] ?? String(k.proto)),
        ports: k.portBits === 0 ? 'any' : span === 1 ? String(k.port) : `${k.port}-${k.port + span - 1}`,
        verdict: value.verdict,
        proxyPort: value.proxyPort,
        key: k,
      };
    });
    return { endpoint: v.endpoint, epId: v.epId, identity: v.identity, policyGen: v.policyGen, flags: v.flags, entries };
  });
  api.route(apiRoutes.proxy, () => (agent.proxyStatus()));
  api.route(apiRoutes.proxyRestart, () => agent.restartProxy());
  api.route(apiRoutes.flows, () => ({ flows: agent.recentFlows() }));
  api.route(apiRoutes.fqdnCache, async ({ query }) => {
    const dns = agent.dnsService();
    return { proxy: (await dns?.stats()) ?? null, entries: agent.fqdn.list(query.endpoint), at: new Date() };
  });
  api.route(apiRoutes.fqdnCacheFlush, async ({ body }) => {
    const dns = agent.dnsService();
    if (!dns) throw new DnsProxyNotRunningError('fqdn cache flush');
    return { removed: await dns.flush(body), at: new Date() };
  });
  api.route(apiRoutes.policyTrace, ({ body }) => {
    // The same scenario format as the offline trace; only `flows` is read, the world is the agent's.
    const route = routeName(apiRoutes.policyTrace);
    let doc: unknown;
    try {
      doc = parseYaml(body.scenario);
    } catch (e) {
      throw new ApiRequestInvalidError(route, 'body', `scenario is not YAML (${e instanceof Error ? e.message : String(e)})`);
    }
    const flowsOnly = typeof doc === 'object' && doc !== null && 'flows' in doc ? { flows: doc.flows } : doc;
    const parsed = scenarioSchema.safeParse(flowsOnly);
    if (!parsed.success) throw new ApiRequestInvalidError(route, 'body', `scenario: ${issuePaths(parsed.error).join('; ')}`);
    return { flows: parsed.data.flows.map((f) => traceFlow(agent.engine, parsed.data, f)) };
  });
}
