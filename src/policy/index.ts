/**
 * The policy engine's public surface, for the agent, the eBPF map writer and
 * the Envoy translator. Everything else under src/policy is internal.
 *
 *   import { PolicyEngine, loadPolicyPath, lookupByGroups } from '../policy/index.js';
 */
export type { DirectionPolicy, EndpointPolicy, IpcacheEntry, L7Rules, PolicyEntry, Verdict, NumericIdentity, Direction } from './types.js';
export { ANY_IDENTITY, Proto } from './types.js';
export { PolicyEngine } from './engine.js';
export type { EndpointInput, EngineOptions, EngineStats, NodeInput, ServiceInput } from './engine.js';
export type { EnforcementMode } from './resolve.js';
export { ALLOW_LOCALHOST } from './resolve.js';
export { MemoryDnsCache } from './dns-cache.js';
export type { DnsCache } from './dns-cache.js';
export { lookupByGroups, lookupEntries } from './lookup.js';
export type { LookupResult } from './lookup.js';
export { matchDnsSelector, matchHttp, matchKafka } from './l7-match.js';
export { loadPolicyDocuments, loadPolicyFile, loadPolicyPath, loadPolicyText, policyKey, policyName } from './api/loader.js';
export type { LoadedPolicy, LoadResult } from './api/loader.js';
export type { PolicyDocument } from './api/schema.js';
export { PolicyValidationError, formatProblem } from './api/problem.js';
export type { PolicyProblem, ProblemCode } from './api/problem.js';
export { traceScenario, loadScenarioFile, parseScenario } from './trace.js';
export type { FlowTrace, TraceResult } from './trace.js';
