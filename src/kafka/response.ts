/**
 * Kafka responses the processor writes itself:
 * - `errorResponse(req, code)`: the API's own response refusing `req` —
 *   `code` in every per-topic/partition slot and in the top-level error where
 *   the version has one — so the client raises its usual error for it
 *   (TOPIC_AUTHORIZATION_FAILED 29, GROUP_AUTHORIZATION_FAILED 30,
 *   CLUSTER_AUTHORIZATION_FAILED 31). Layouts: Apache Kafka's
 *   <Api>Response.json definitions. Returns null for an API it cannot answer
 *   (the processor closes the connection instead).
 * - `capApiVersions(frame, version)`: the broker's ApiVersions response with
 *   every known API's max version lowered to what request.ts reads.
 *
 * Frames include the 4-byte size. The response header is v1 (correlation id +
 * tagged fields) in flexible versions, v0 otherwise, and always v0 for
 * ApiVersions (so a client can read it before it knows the versions).
 */
import { APIS, ApiKey, isFlexible } from './api.js';
import type { KafkaRequestInfo, TopicPartitions } from './request.js';
import { Reader, Writer } from './wire.js';

function frame(req: KafkaRequestInfo, body: Buffer): Buffer {
  const flexible = isFlexible(req.apiKey, req.apiVersion);
  const header = new Writer(flexible).int32(req.correlationId);
  if (req.apiKey !== ApiKey.ApiVersions) header.tags();
  const h = header.build();
  const size = Buffer.alloc(4);
  size.writeInt32BE(h.length + body.length);
  return Buffer.concat([size, h, body]);
}

type TopicWriter = (w: Writer, t: TopicPartitions) => void;

function topicsOf(req: KafkaRequestInfo): TopicPartitions[] {
  return req.topics ?? [];
}

/** One element per topic: name, then each partition through `partition`, then tags. */
function perTopic(partition: (w: Writer, index: number) => void): TopicWriter {
  return (w, t) => {
    w.string(t.name).array(t.partitions, partition).tags();
  };
}

export function errorResponse(req: KafkaRequestInfo, code: number): Buffer | null {
  if (!req.readable && req.apiKey !== ApiKey.ApiVersions) return null;
  const v = req.apiVersion;
  const w = new Writer(isFlexible(req.apiKey, v));
  switch (req.apiKey) {
    case ApiKey.Produce:
      w.array(
        topicsOf(req),
        perTopic((w, index) => {
          w.int32(index).int16(code).int64(-1n);
          if (v >= 2) w.int64(-1n); // log_append_time_ms
          if (v >= 5) w.int64(-1n); // log_start_offset
          if (v >= 8) w.array([], () => undefined).nullableString(null); // record_errors, error_message
          w.tags();
        }),
      );
      if (v >= 1) w.int32(0); // throttle_time_ms
      break;
    case ApiKey.Fetch:
      if (v >= 1) w.int32(0);
      if (v >= 7) w.int16(0).int32(0); // error_code (per partition below), session_id
      w.array(
        topicsOf(req),
        perTopic((w, index) => {
          w.int32(index).int16(code).int64(-1n); // high_watermark
          if (v >= 4) w.int64(-1n).int64(-1n).array(null, () => undefined); // last_stable_offset, log_start_offset, aborted_transactions
          if (v >= 11) w.int32(-1); // preferred_read_replica
          w.nullableBytes(null).tags(); // records
        }),
      );
      break;
    case ApiKey.ListOffsets:
      if (v >= 2) w.int32(0);
      w.array(
        topicsOf(req),
        perTopic((w, index) => {
          w.int32(index).int16(code);
          if (v === 0) w.array([], () => undefined);
          else w.int64(-1n).int64(-1n);
          if (v >= 4) w.int32(-1); // leader_epoch
          w.tags();
        }),
      );
      break;
    case ApiKey.Metadata:
      if (v >= 3) w.int32(0);
      w.array([], () => undefined); // brokers: none (the client keeps the ones it knows)
      if (v >= 2) w.nullableString(null); // cluster_id
      if (v >= 1) w.int32(-1); // controller_id
      w.array(topicsOf(req), (w, t) => {
        w.int16(code);
        w.string(t.name);
        if (v >= 10) w.uuid();
        if (v >= 1) w.bool(false); // is_internal
        w.array([], () => undefined); // partitions
        if (v >= 8) w.int32(-2147483648); // topic_authorized_operations
        w.tags();
      });
      if (v >= 8 && v <= 10) w.int32(-2147483648); // cluster_authorized_operations
      if (v >= 13) w.int16(req.allTopics ? code : 0);
      break;
    case ApiKey.OffsetCommit:
      if (v >= 3) w.int32(0);
      w.array(
        topicsOf(req),
        perTopic((w, index) => {
          w.int32(index).int16(code).tags();
        }),
      );
      break;
    case ApiKey.OffsetFetch: {
      const partition = (w: Writer, index: number): void => {
        w.int32(index).int64(-1n);
        if (v >= 5) w.int32(-1); // committed_leader_epoch
        w.nullableString('').int16(code).tags();
      };
      if (v >= 3) w.int32(0);
      if (v <= 7) {
        w.array(topicsOf(req), perTopic(partition));
        if (v >= 2) w.int16(code);
      } else {
        w.array(req.groupTopics ?? [], (w, g) => {
          w.string(g.group)
            .array(g.topics ?? [], perTopic(partition))
            .int16(code)
            .tags();
        });
      }
      break;
    }
    case ApiKey.FindCoordinator: {
      if (v >= 1) w.int32(0);
      if (v <= 3) {
        w.int16(code);
        if (v >= 1) w.nullableString(null);
        w.int32(-1).string('').int32(-1);
      } else {
        w.array(req.coordinatorKeys?.keys ?? [], (w, key) => {
          w.string(key).int32(-1).string('').int32(-1).int16(code).nullableString(null).tags();
        });
      }
      break;
    }
    case ApiKey.JoinGroup:
      if (v >= 2) w.int32(0);
      w.int16(code).int32(-1); // generation_id
      if (v >= 7) w.nullableString(null).nullableString(null); // protocol_type, protocol_name
      else w.string('');
      w.string(''); // leader
      if (v >= 9) w.bool(false); // skip_assignment
      w.string('').array([], () => undefined); // member_id, members
      break;
    case ApiKey.Heartbeat:
      if (v >= 1) w.int32(0);
      w.int16(code);
      break;
    case ApiKey.LeaveGroup:
      if (v >= 1) w.int32(0);
      w.int16(code);
      if (v >= 3) {
        w.array(req.members ?? [], (w, m) => {
          w.string(m.memberId).nullableString(m.groupInstanceId).int16(code).tags();
        });
      }
      break;
    case ApiKey.SyncGroup:
      if (v >= 1) w.int32(0);
      w.int16(code);
      if (v >= 5) w.nullableString(null).nullableString(null);
      w.nullableBytes(Buffer.alloc(0));
      break;
    case ApiKey.InitProducerId:
      w.int32(0).int16(code).int64(-1n).int16(-1); // throttle_time_ms, error_code, producer_id, producer_epoch
      if (v >= 6) w.int64(-1n).int16(-1); // ongoing_txn_producer_id, ongoing_txn_producer_epoch
      break;
    case ApiKey.SaslHandshake:
      w.int16(code).array([], () => undefined); // error_code, mechanisms: none for this client
      break;
    case ApiKey.SaslAuthenticate:
      w.int16(code).nullableString('refused by network policy').nullableBytes(Buffer.alloc(0)); // error_code, error_message, auth_bytes
      if (v >= 1) w.int64(0n); // session_lifetime_ms
      break;
    case ApiKey.ApiVersions: {
      // Any version: the v0 layout is what a client falls back to reading on an error.
      const body = new Writer(false).int16(code).array([], () => undefined);
      if (v >= 1 && v <= 2) body.int32(0);
      if (v >= 3) return frame(req, new Writer(true).int16(code).array([], () => undefined).int32(0).tags().build());
      return frame(req, body.build());
    }
    default:
      return null;
  }
  w.tags();
  return frame(req, w.build());
}

/**
 * The broker's ApiVersions response (a whole frame, size included) with each
 * API of api.ts capped at its maxVersion; rewritten in place (the max is a
 * fixed-width int16, so the frame keeps its length). An error response, or a
 * version the client did not ask in, is returned unchanged.
 */
export function capApiVersions(frameWithSize: Buffer, requestVersion: number): Buffer {
  const out = Buffer.from(frameWithSize);
  // Response header v0: size, correlation_id.
  const flexible = requestVersion >= 3;
  const r = new Reader(out, 8, flexible);
  const errorCode = r.int16();
  if (errorCode !== 0) return frameWithSize;
  const n = r.arrayLength();
  for (let i = 0; i < n; i++) {
    const key = r.int16();
    const min = r.int16();
    const maxAt = r.offset;
    const max = r.int16();
    r.taggedFields();
    const cap = APIS.get(key)?.maxVersion;
    if (cap !== undefined && max > cap) out.writeInt16BE(Math.max(cap, min), maxAt);
  }
  return out;
}
