/**
 * The local API's routes (the CLI's view of the running agent). Read-only,
 * except policy trace, which only reads too but takes flows in its body.
 */
import { parse as parseYaml } from 'yaml';
import { scenarioSchema, traceFlow } from '../policy/trace.js';
import type { Agent } from './agent.js';
import { ApiError, type ApiServer } from './api-server.js';

function required(q: URLSearchParams, name: string): string {
  const v = q.get(name);
  if (!v) throw new ApiError(400, 'MISSING_PARAMETER', `query parameter "${name}" is required`);
  return v;
}

export function registerRoutes(api: ApiServer, agent: Agent): void {
  api.route('GET', '/v1/status', () => agent.status());
  api.route('GET', '/v1/endpoints', () => ({ endpoints: agent.endpointList() }));
  api.route('GET', '/v1/endpoint', (q) => {
    const id = required(q, 'id');
    const e = agent.endpointList().find((x) => x.id === id);
    if (!e) throw new ApiError(404, 'ENDPOINT_NOT_FOUND', `no local endpoint ${id}`);
    return { ...e, policy: agent.engine.endpointPolicy(id) ?? null };
  });
  api.route('GET', '/v1/identities', () => ({
    identities: [...agent.engine.allocator.all()].sort((a, b) => a.id - b.id).map((i) => ({ id: i.id, labels: i.labels.toStrings(), scope: i.scope })),
  }));
  api.route('GET', '/v1/services', () => {
    const sm = agent.serviceManager();
    return { enabled: sm !== null, status: sm?.status() ?? null, services: agent.engine.serviceList() };
  });
  api.route('GET', '/v1/policy', (q) => agent.policyView(q.get('endpoint') ?? undefined));
  api.route('GET', '/v1/bpf/policy', (q) => {
    const id = required(q, 'endpoint');
    const v = agent.kernelPolicy(id);
    if (!v) throw new ApiError(404, 'ENDPOINT_NOT_FOUND', `no endpoint ${id} in the datapath`);
    const PROTO: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };
    const entries = [...v.entries.values()].map(({ key: k, value }) => {
      const span = k.portBits === 0 ? 0 : 2 ** (16 - k.portBits);
      return {
        direction: k.egress ? 'egress' : 'ingress',
        identity: k.identity,
        protocol: k.anyProto ? 'ANY' : (PROTO[k.proto] ?? String(k.proto)),
        ports: k.portBits === 0 ? 'any' : span === 1 ? String(k.port) : `${k.port}-${k.port + span - 1}`,
        verdict: value.verdict,
        proxyPort: value.proxyPort,
        key: k,
      };
    });
    return { ...v, entries };
  });
  api.route('GET', '/v1/proxy', () => agent.proxyStatus());
  api.route('GET', '/v1/flows', () => ({ flows: agent.recentFlows() }));
  api.route('POST', '/v1/policy/trace', (_q, body) => {
    // The same scenario format as the offline trace; only `flows` is read, the world is the agent's.
    const text = typeof body === 'object' && body !== null && 'scenario' in body && typeof body.scenario === 'string' ? body.scenario : undefined;
    if (text === undefined) throw new ApiError(400, 'BAD_REQUEST', 'body must be {"scenario": "<YAML>"}');
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new ApiError(400, 'BAD_SCENARIO', e instanceof Error ? e.message : String(e));
    }
    const flowsOnly = typeof doc === 'object' && doc !== null && 'flows' in doc ? { flows: doc.flows } : doc;
    const parsed = scenarioSchema.safeParse(flowsOnly);
    if (!parsed.success) {
      throw new ApiError(400, 'BAD_SCENARIO', parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    }
    return { flows: parsed.data.flows.map((f) => traceFlow(agent.engine, parsed.data, f)) };
  });
}
