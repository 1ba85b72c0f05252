/**
 * The Kafka APIs the processor reads, with the facts their framing needs:
 * the first flexible version (KIP-482: compact strings/arrays, tagged fields,
 * request header v2, response header v1) and the highest version this codec
 * parses. Flexible thresholds are the `flexibleVersions` of Apache Kafka's
 * message definitions (clients/src/main/resources/common/message/*.json).
 *
 * `maxVersion` is what the processor lets the broker advertise (it rewrites
 * the ApiVersions response, see response.ts): the versions above it name
 * topics by UUID (Produce ≥ 13, Fetch ≥ 13, OffsetCommit/OffsetFetch ≥ 9) or
 * are not read by this codec yet. Capping keeps every request's topics
 * readable by name, with no per-connection ID → name table that a policy
 * decision would depend on (docs/kafka.md, "Topic IDs").
 */
export const ApiKey = {
  Produce: 0,
  Fetch: 1,
  ListOffsets: 2,
  Metadata: 3,
  OffsetCommit: 8,
  OffsetFetch: 9,
  FindCoordinator: 10,
  JoinGroup: 11,
  Heartbeat: 12,
  LeaveGroup: 13,
  SyncGroup: 14,
  DescribeGroups: 15,
  ListGroups: 16,
  SaslHandshake: 17,
  ApiVersions: 18,
  CreateTopics: 19,
  DeleteTopics: 20,
  InitProducerId: 22,
  SaslAuthenticate: 36,
} as const;

export interface ApiInfo {
  /** The name Cilium's `apiKey` rules use (lower case). */
  name: string;
  /** First flexible version; Infinity when none is. */
  flexibleFrom: number;
  /** Highest version the codec reads (and lets the broker advertise). */
  maxVersion: number;
}

export const APIS: ReadonlyMap<number, ApiInfo> = new Map<number, ApiInfo>([
  [ApiKey.Produce, { name: 'produce', flexibleFrom: 9, maxVersion: 12 }],
  [ApiKey.Fetch, { name: 'fetch', flexibleFrom: 12, maxVersion: 12 }],
  [ApiKey.ListOffsets, { name: 'offsets', flexibleFrom: 6, maxVersion: 8 }],
  [ApiKey.Metadata, { name: 'metadata', flexibleFrom: 9, maxVersion: 13 }],
  [ApiKey.OffsetCommit, { name: 'offsetcommit', flexibleFrom: 8, maxVersion: 8 }],
  [ApiKey.OffsetFetch, { name: 'offsetfetch', flexibleFrom: 6, maxVersion: 8 }],
  [ApiKey.FindCoordinator, { name: 'findcoordinator', flexibleFrom: 3, maxVersion: 6 }],
  [ApiKey.JoinGroup, { name: 'joingroup', flexibleFrom: 6, maxVersion: 9 }],
  [ApiKey.Heartbeat, { name: 'heartbeat', flexibleFrom: 4, maxVersion: 4 }],
  [ApiKey.LeaveGroup, { name: 'leavegroup', flexibleFrom: 4, maxVersion: 5 }],
  [ApiKey.SyncGroup, { name: 'syncgroup', flexibleFrom: 4, maxVersion: 5 }],
  [ApiKey.DescribeGroups, { name: 'describegroups', flexibleFrom: 5, maxVersion: 6 }],
  [ApiKey.ListGroups, { name: 'listgroups', flexibleFrom: 3, maxVersion: 5 }],
  [ApiKey.SaslHandshake, { name: 'saslhandshake', flexibleFrom: Infinity, maxVersion: 1 }],
  [ApiKey.ApiVersions, { name: 'apiversions', flexibleFrom: 3, maxVersion: Infinity }],
  [ApiKey.CreateTopics, { name: 'createtopics', flexibleFrom: 5, maxVersion: 7 }],
  [ApiKey.DeleteTopics, { name: 'deletetopics', flexibleFrom: 4, maxVersion: 6 }],
  [ApiKey.InitProducerId, { name: 'initproducerid', flexibleFrom: 2, maxVersion: 6 }],
  [ApiKey.SaslAuthenticate, { name: 'saslauthenticate', flexibleFrom: 2, maxVersion: 2 }],
]);

export function isFlexible(apiKey: number, version: number): boolean {
  const info = APIS.get(apiKey);
  return info !== undefined && version >= info.flexibleFrom;
}

/** Kafka's error codes the processor answers with. */
export const KafkaErrorCode = {
  NONE: 0,
  TOPIC_AUTHORIZATION_FAILED: 29,
  GROUP_AUTHORIZATION_FAILED: 30,
  CLUSTER_AUTHORIZATION_FAILED: 31,
  UNSUPPORTED_SASL_MECHANISM: 33,
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 53,
  SASL_AUTHENTICATION_FAILED: 58,
} as const;
