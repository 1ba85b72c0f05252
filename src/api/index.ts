/**
 * Every route of the agent's local API, with its schemas (see route.ts).
 * The server registers a handler per route; the CLI calls them by these
 * objects, never by a path string of its own.
 */
import { BpfPolicyQuery, BpfPolicyResponse, PolicyTraceRequest, PolicyTraceResponse, PolicyViewQuery, PolicyViewResponse } from './policy.js';
import { EndpointQuery, EndpointResponse, EndpointsResponse, IdentitiesResponse } from './endpoint.js';
import { FlowsResponse } from './flow.js';
import { FqdnCacheFlushRequest, FqdnCacheFlushResponse, FqdnCacheQuery, FqdnCacheResponse } from './fqdn.js';
import { ProxyResponse, ProxyRestartRequest, ProxyRestartResponse } from './proxy.js';
import { defineRoute, NoBody, NoQuery } from './route.js';
import { ServicesResponse } from './service.js';
import { StatusResponse } from './status.js';

export const apiRoutes = {
  status: defineRoute({ method: 'GET', path: '/v1/status', query: NoQuery, body: NoBody, response: StatusResponse }),
  endpoints: defineRoute({ method: 'GET', path: '/v1/endpoints', query: NoQuery, body: NoBody, response: EndpointsResponse }),
  endpoint: defineRoute({ method: 'GET', path: '/v1/endpoint', query: EndpointQuery, body: NoBody, response: EndpointResponse }),
  identities: defineRoute({ method: 'GET', path: '/v1/identities', query: NoQuery, body: NoBody, response: IdentitiesResponse }),
  services: defineRoute({ method: 'GET', path: '/v1/services', query: NoQuery, body: NoBody, response: ServicesResponse }),
  policy: defineRoute({ method: 'GET', path: '/v1/policy', query: PolicyViewQuery, body: NoBody, response: PolicyViewResponse }),
  bpfPolicy: defineRoute({ method: 'GET', path: '/v1/bpf/policy', query: BpfPolicyQuery, body: NoBody, response: BpfPolicyResponse }),
  proxy: defineRoute({ method: 'GET', path: '/v1/proxy', query: NoQuery, body: NoBody, response: ProxyResponse }),
  flows: defineRoute({ method: 'GET', path: '/v1/flows', query: NoQuery, body: NoBody, response: FlowsResponse }),
  fqdnCache: defineRoute({ method: 'GET', path: '/v1/fqdn/cache', query: FqdnCacheQuery, body: NoBody, response: FqdnCacheResponse }),
  fqdnCacheFlush: defineRoute({ method: 'POST', path: '/v1/fqdn/cache/flush', query: NoQuery, body: FqdnCacheFlushRequest, response: FqdnCacheFlushResponse }),
  policyTrace: defineRoute({ method: 'POST', path: '/v1/policy/trace', query: NoQuery, body: PolicyTraceRequest, response: PolicyTraceResponse }),
  proxyRestart: defineRoute({ method: 'POST', path: '/v1/proxy/restart', query: NoQuery, body: ProxyRestartRequest, response: ProxyRestartResponse }),
};

export { ApiErrorBody, HTTP_STATUS, issuePaths, routeName, type RouteDef } from './route.js';
