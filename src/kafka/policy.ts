/**
 * The decision for one Kafka request against the rules that apply to its
 * connection (Cilium's Kafka rule semantics, src/policy/l7-match.ts):
 * every topic the request names must be allowed by some rule; a request that
 * names none is judged on its API key, version and client ID.
 *
 * - allow: forwarded to the broker;
 * - deny: answered with the API's own error — TOPIC_AUTHORIZATION_FAILED (29)
 *   per topic for a refused topic API (Produce, Fetch, ListOffsets, Metadata)
 *   and for a group API refused only for its topics, GROUP_AUTHORIZATION_FAILED
 *   (30) for another refused group API, CLUSTER_AUTHORIZATION_FAILED (31)
 *   otherwise (ApiVersions, a Metadata request for every topic, InitProducerId
 *   without a transactional ID); TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53) for
 *   InitProducerId with one; UNSUPPORTED_SASL_MECHANISM (33, no mechanism
 *   offered) for SaslHandshake, SASL_AUTHENTICATION_FAILED (58) for
 *   SaslAuthenticate;
 * - close: a request whose body the codec does not read (an unknown API or a
 *   version above its cap) and that no topic-free rule allows: the connection
 *   is closed, since neither its topics nor an error response can be made.
 */
import { KAFKA_API_KEYS, matchKafka, type KafkaRequest } from '../policy/l7-match.js';
import type { KafkaRule } from '../policy/types.js';
import { ApiKey, KafkaErrorCode } from './api.js';
import type { KafkaRequestInfo } from './request.js';

export type KafkaVerdict = { verdict: 'allow' } | { verdict: 'deny'; code: number } | { verdict: 'close'; reason: string };

const GROUP_APIS: ReadonlySet<number> = new Set([
  ApiKey.OffsetCommit,
  ApiKey.OffsetFetch,
  ApiKey.FindCoordinator,
  ApiKey.JoinGroup,
  ApiKey.Heartbeat,
  ApiKey.LeaveGroup,
  ApiKey.SyncGroup,
  ApiKey.DescribeGroups,
  ApiKey.ListGroups,
]);

const NAMES = new Map(Object.entries(KAFKA_API_KEYS).map(([name, key]) => [key, name]));

/** The name rules use for an API key (every Kafka 4.x API has one). */
export function apiName(apiKey: number): string {
  return NAMES.get(apiKey) ?? `api-${apiKey}`;
}

/** The l7-match request shape of `req` for one of its topics (or none). */
export function matchRequest(req: KafkaRequestInfo, topic?: string): KafkaRequest {
  const m: KafkaRequest = { apiKey: apiName(req.apiKey), apiVersion: req.apiVersion };
  if (req.clientId !== null) m.clientID = req.clientId;
  if (topic !== undefined) m.topic = topic;
  if (req.transactionalId !== undefined) m.transactionalID = req.transactionalId;
  return m;
}

export function decide(rules: readonly KafkaRule[], req: KafkaRequestInfo): KafkaVerdict {
  // After a v0 handshake the SASL tokens are raw bytes, not Kafka frames (Kafka 4 removed v0).
  if (req.apiKey === ApiKey.SaslHandshake && req.apiVersion === 0) return { verdict: 'close', reason: 'SaslHandshake v0 (raw SASL tokens follow) is not read' };
  const topicFree = rules.some((r) => matchKafka(r, matchRequest(req)));
  if (!req.readable) {
    // Nothing about its topics is known: only a rule that names no topic may let it through.
    if (rules.some((r) => (r.topic === undefined || r.topic === '') && matchKafka(r, matchRequest(req)))) return { verdict: 'allow' };
    if (req.apiKey === ApiKey.ApiVersions) return { verdict: 'deny', code: KafkaErrorCode.CLUSTER_AUTHORIZATION_FAILED };
    return { verdict: 'close', reason: `${apiName(req.apiKey)} v${req.apiVersion} is not read by the processor and no topic-free rule allows it` };
  }
  const topics = req.topics ?? [];
  const allowed = topics.length === 0 ? topicFree : topics.every((t) => rules.some((r) => matchKafka(r, matchRequest(req, t.name))));
  if (allowed) return { verdict: 'allow' };
  if (req.apiKey === ApiKey.InitProducerId) {
    return { verdict: 'deny', code: req.transactionalId ? KafkaErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED : KafkaErrorCode.CLUSTER_AUTHORIZATION_FAILED };
  }
  if (req.apiKey === ApiKey.SaslHandshake) return { verdict: 'deny', code: KafkaErrorCode.UNSUPPORTED_SASL_MECHANISM };
  if (req.apiKey === ApiKey.SaslAuthenticate) return { verdict: 'deny', code: KafkaErrorCode.SASL_AUTHENTICATION_FAILED };
  const group = GROUP_APIS.has(req.apiKey);
  // Topic APIs answer per topic, as a broker's authorizer does; a group API says the group is refused
  // unless only its topics are.
  if (topics.length > 0 && (!group || topicFree)) return { verdict: 'deny', code: KafkaErrorCode.TOPIC_AUTHORIZATION_FAILED };
  return { verdict: 'deny', code: group ? KafkaErrorCode.GROUP_AUTHORIZATION_FAILED : KafkaErrorCode.CLUSTER_AUTHORIZATION_FAILED };
}

/**
 * The decision under several rule sets that must all allow (an egress chain into a local endpoint
 * with ingress rules: the client's egress rules, then the server's ingress rules for the client):
 * the first set that does not allow decides. No set at all: every request refused.
 */
export function decideAll(sets: ReadonlyArray<readonly KafkaRule[]>, req: KafkaRequestInfo): KafkaVerdict {
  if (sets.length === 0) return decide([], req);
  for (const rules of sets) {
    const v = decide(rules, req);
    if (v.verdict !== 'allow') return v;
  }
  return { verdict: 'allow' };
}
