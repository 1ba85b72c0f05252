/**
 * Kafka request decoding for policy: the header (v1, or v2 in flexible
 * versions: api_key, api_version, correlation_id, client_id, tagged fields)
 * and, for the APIs of api.ts up to their `maxVersion`, the names policy
 * judges — topics (with partitions, which the error responses list), groups,
 * Produce's acks. Layouts follow Apache Kafka's message definitions
 * (clients/src/main/resources/common/message/<Api>Request.json).
 *
 *   const req = parseRequest(frame);  // frame: one request without its 4-byte size
 *   if (!req.readable) …              // header only: an API or version the codec does not read
 *
 * A frame whose header is unreadable, or whose body runs past its end, throws
 * KafkaError(MESHD_KAFKA_MALFORMED): the processor closes the connection.
 */
import { APIS, ApiKey, isFlexible } from './api.js';
import { KafkaError } from './errors.js';
import { Reader } from './wire.js';

export interface TopicPartitions {
  name: string;
  partitions: number[];
}

export interface KafkaRequestInfo {
  apiKey: number;
  apiVersion: number;
  correlationId: number;
  clientId: string | null;
  /** Whether the body was read (a known API at a version up to its maxVersion). */
  readable: boolean;
  /** The topics the request names; null when it asks for every topic (Metadata, OffsetFetch) or names none. */
  topics: TopicPartitions[] | null;
  /** True when the request addresses every topic (a null topic list). */
  allTopics: boolean;
  /** Groups the request names (group APIs, OffsetCommit/OffsetFetch, FindCoordinator for groups). */
  groups: string[];
  /** OffsetFetch ≥ 8: the topics per group, for the error response. */
  groupTopics?: Array<{ group: string; topics: TopicPartitions[] | null }>;
  /** LeaveGroup ≥ 3: the members leaving, for the error response. */
  members?: Array<{ memberId: string; groupInstanceId: string | null }>;
  /** FindCoordinator: key type (0 group, 1 transaction) and keys. */
  coordinatorKeys?: { keyType: number; keys: string[] };
  /** InitProducerId: the transactional ID (null for an idempotent producer). */
  transactionalId?: string | null;
  /** Produce: acks (0 = the broker sends no response). */
  acks?: number;
  /** Fetch ≥ 7: offset of session_id in the frame (the processor makes every fetch a full one). */
  fetchSessionOffset?: number;
}

const int32 = (r: Reader): number => r.int32();

function topicPartitions(r: Reader, partition: (r: Reader) => number): TopicPartitions {
  const name = r.string();
  const partitions = r.array(partition) ?? [];
  r.taggedFields();
  return { name, partitions };
}

function readBody(r: Reader, req: KafkaRequestInfo): void {
  const v = req.apiVersion;
  switch (req.apiKey) {
    case ApiKey.Produce: {
      if (v >= 3) r.nullableString(); // transactional_id
      req.acks = r.int16();
      r.int32(); // timeout_ms
      req.topics =
        r.array((r) =>
          topicPartitions(r, (r) => {
            const index = r.int32();
            r.skipBytes(); // records
            r.taggedFields();
            return index;
          }),
        ) ?? [];
      break;
    }
    case ApiKey.Fetch: {
      r.int32(); // replica_id (≤ 14)
      r.int32(); // max_wait_ms
      r.int32(); // min_bytes
      if (v >= 3) r.int32(); // max_bytes
      if (v >= 4) r.int8(); // isolation_level
      if (v >= 7) {
        req.fetchSessionOffset = r.offset;
        r.int32(); // session_id
        r.int32(); // session_epoch
      }
      req.topics =
        r.array((r) =>
          topicPartitions(r, (r) => {
            const index = r.int32();
            if (v >= 9) r.int32(); // current_leader_epoch
            r.skip(8); // fetch_offset
            if (v >= 12) r.int32(); // last_fetched_epoch
            if (v >= 5) r.skip(8); // log_start_offset
            r.int32(); // partition_max_bytes
            r.taggedFields();
            return index;
          }),
        ) ?? [];
      if (v >= 7) r.array((r) => topicPartitions(r, int32)); // forgotten_topics_data: leaves the session, reads nothing
      if (v >= 11) r.string(); // rack_id
      break;
    }
    case ApiKey.ListOffsets: {
      r.int32(); // replica_id
      if (v >= 2) r.int8(); // isolation_level
      req.topics =
        r.array((r) =>
          topicPartitions(r, (r) => {
            const index = r.int32();
            if (v >= 4) r.int32(); // current_leader_epoch
            r.skip(8); // timestamp
            if (v === 0) r.int32(); // max_num_offsets
            r.taggedFields();
            return index;
          }),
        ) ?? [];
      return; // later fields (timeout_ms) do not matter here
    }
    case ApiKey.Metadata: {
      const topics = r.array((r) => {
        if (v >= 10) r.skip(16, 'topic_id');
        const name = v >= 10 ? r.nullableString() : r.string();
        r.taggedFields();
        if (name === null) throw new KafkaError('MESHD_KAFKA_UNSUPPORTED', 'Metadata by topic ID is not read (names only)');
        return { name, partitions: [] };
      });
      req.allTopics = topics === null || (v === 0 && topics.length === 0);
      req.topics = req.allTopics ? null : topics;
      return;
    }
    case ApiKey.OffsetCommit: {
      req.groups = [r.string()];
      if (v >= 1) {
        r.int32(); // generation_id
        r.string(); // member_id
      }
      if (v >= 7) r.nullableString(); // group_instance_id
      if (v >= 2 && v <= 4) r.skip(8); // retention_time_ms
      req.topics =
        r.array((r) =>
          topicPartitions(r, (r) => {
            const index = r.int32();
            r.skip(8); // committed_offset
            if (v >= 6) r.int32(); // committed_leader_epoch
            if (v === 1) r.skip(8); // commit_timestamp
            r.nullableString(); // committed_metadata
            r.taggedFields();
            return index;
          }),
        ) ?? [];
      break;
    }
    case ApiKey.OffsetFetch: {
      if (v <= 7) {
        req.groups = [r.string()];
        req.topics = r.array((r) => topicPartitions(r, int32));
        req.allTopics = req.topics === null;
      } else {
        const groups =
          r.array((r) => {
            const group = r.string();
            const topics = r.array((r) => topicPartitions(r, int32));
            r.taggedFields();
            return { group, topics };
          }) ?? [];
        req.groupTopics = groups;
        req.groups = groups.map((g) => g.group);
        req.allTopics = groups.some((g) => g.topics === null);
        req.topics = req.allTopics ? null : groups.flatMap((g) => g.topics ?? []);
      }
      return;
    }
    case ApiKey.FindCoordinator: {
      if (v <= 3) {
        const key = r.string();
        const keyType = v >= 1 ? r.int8() : 0;
        req.coordinatorKeys = { keyType, keys: [key] };
      } else {
        const keyType = r.int8();
        req.coordinatorKeys = { keyType, keys: r.array((r) => r.string()) ?? [] };
      }
      if (req.coordinatorKeys.keyType === 0) req.groups = req.coordinatorKeys.keys;
      return;
    }
    case ApiKey.LeaveGroup: {
      req.groups = [r.string()];
      if (v <= 2) {
        req.members = [{ memberId: r.string(), groupInstanceId: null }];
      } else {
        req.members =
          r.array((r) => {
            const memberId = r.string();
            const groupInstanceId = r.nullableString();
            if (v >= 5) r.nullableString(); // reason
            r.taggedFields();
            return { memberId, groupInstanceId };
          }) ?? [];
      }
      return;
    }
    case ApiKey.JoinGroup:
    case ApiKey.Heartbeat:
    case ApiKey.SyncGroup:
      req.groups = [r.string()];
      return;
    case ApiKey.DescribeGroups:
      req.groups = r.array((r) => r.string()) ?? [];
      return;
    case ApiKey.InitProducerId:
      req.transactionalId = r.nullableString();
      return; // later fields (timeout, producer ID and epoch) do not matter here
    default:
      return; // ApiVersions, ListGroups, SaslHandshake, SaslAuthenticate, CreateTopics, DeleteTopics: nothing policy reads beyond the key
  }
  r.taggedFields();
}

/** Reads one request frame (without its 4-byte size). */
export function parseRequest(frame: Buffer): KafkaRequestInfo {
  const h = new Reader(frame);
  const apiKey = h.int16();
  const apiVersion = h.int16();
  const correlationId = h.int32();
  // The header's client_id is a classic nullable string even in flexible versions (header v2).
  const clientId = h.classicNullableString();
  const req: KafkaRequestInfo = { apiKey, apiVersion, correlationId, clientId, readable: false, topics: null, allTopics: false, groups: [] };
  const info = APIS.get(apiKey);
  // ApiVersions: nothing in its body matters, and clients send versions newer than the broker's first.
  if (apiKey === ApiKey.ApiVersions) return { ...req, readable: true };
  if (info === undefined || apiVersion < 0 || apiVersion > info.maxVersion) return req;
  const flexible = isFlexible(apiKey, apiVersion);
  const body = new Reader(frame, h.offset, flexible);
  body.taggedFields(); // request header v2
  readBody(body, req);
  req.readable = true;
  return req;
}
