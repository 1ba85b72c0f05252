/**
 * One Kafka connection as the processor sees it: the client's bytes (read
 * direction) and the broker's (write direction), each split into frames.
 *
 * Requests: each is decided (policy.ts) against the connection's rules,
 * looked up afresh for every request so a policy edit applies to the next
 * one. An allowed request goes on unchanged (a Fetch ≥ 7 is made a full,
 * sessionless fetch, so every fetch names its topics). A denied one is
 * replaced by an ApiVersions v0 request with the same correlation ID, and
 * the broker's answer to that is replaced by the denied API's error
 * response: the error reaches the client in correlation-ID order, after the
 * responses still in flight, and every byte toward the client is the answer
 * to bytes from the broker (the ext_proc filter is never asked to inject on
 * its own). A denied Produce with acks=0 gets no response, as from a broker.
 * Bytes that do not parse close the connection.
 *
 * Responses: matched to the in-flight queue by correlation ID (Kafka answers
 * in order on a connection); the ApiVersions response is capped to the
 * versions the codec reads (response.ts).
 */
import type { KafkaRule } from '../policy/types.js';
import { isMeshdError } from '../util/errors.js';
import { ApiKey } from './api.js';
import { KafkaError } from './errors.js';
import { DEFAULT_MAX_FRAME_BYTES, FrameSplitter, withSize } from './frame.js';
import { decideAll, type KafkaVerdict } from './policy.js';
import { parseRequest, type KafkaRequestInfo } from './request.js';
import { capApiVersions, errorResponse } from './response.js';
import { Writer } from './wire.js';

interface InFlight {
  correlationId: number;
  apiKey: number;
  apiVersion: number;
  /** The response to send instead of the broker's (a denied request). */
  replacement?: Buffer;
}

export interface DirectionResult {
  /** Bytes to pass on (toward the broker for reads, the client for writes). */
  data: Buffer;
  /** Close the connection (after flushing what is toward the client). */
  close: boolean;
  /** Why it closes (a KafkaError's code or a verdict's reason). */
  reason?: string;
}

export interface DecisionEvent {
  request: KafkaRequestInfo;
  verdict: KafkaVerdict;
}

export interface KafkaConnectionOptions {
  /**
   * The rule sets in force for this connection now, each of which must allow a request; an empty
   * list or an undefined set = none (every request denied).
   */
  rules: () => ReadonlyArray<readonly KafkaRule[] | undefined>;
  maxFrameBytes?: number;
  onDecision?: (e: DecisionEvent) => void;
}

/** An ApiVersions v0 request (header v1, empty body) standing in for a denied request. */
function standIn(req: KafkaRequestInfo): Buffer {
  return withSize(new Writer(false).int16(ApiKey.ApiVersions).int16(0).int32(req.correlationId).nullableString(req.clientId).build());
}

export class KafkaConnection {
  private readonly requests: FrameSplitter;
  private readonly responses: FrameSplitter;
  private readonly inFlight: InFlight[] = [];
  private closed = false;
  decisions = { allowed: 0, denied: 0 };

  constructor(private readonly o: KafkaConnectionOptions) {
    this.requests = new FrameSplitter(o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
    this.responses = new FrameSplitter(o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
  }

  private fail(e: unknown): DirectionResult {
    if (!isMeshdError(e)) throw e;
    this.closed = true;
    return { data: Buffer.alloc(0), close: true, reason: e.code };
  }

  /** Client → broker bytes. */
  onRead(chunk: Buffer): DirectionResult {
    if (this.closed) return { data: Buffer.alloc(0), close: true };
    const out: Buffer[] = [];
    try {
      for (const frame of this.requests.push(chunk)) {
        const req = parseRequest(frame);
        const verdict = decideAll(this.o.rules().map((r) => r ?? []), req);
        this.o.onDecision?.({ request: req, verdict });
        if (verdict.verdict === 'close') {
          this.closed = true;
          return { data: Buffer.alloc(0), close: true, reason: verdict.reason };
        }
        const silent = req.apiKey === ApiKey.Produce && req.acks === 0;
        if (verdict.verdict === 'allow') {
          this.decisions.allowed++;
          out.push(withSize(this.sessionless(frame, req)));
          if (!silent) this.inFlight.push({ correlationId: req.correlationId, apiKey: req.apiKey, apiVersion: req.apiVersion });
          continue;
        }
        this.decisions.denied++;
        if (silent) continue;
        const replacement = errorResponse(req, verdict.code);
        if (replacement === null) {
          this.closed = true;
          return { data: Buffer.alloc(0), close: true, reason: `no error response for ${req.apiKey} v${req.apiVersion}` };
        }
        out.push(standIn(req));
        this.inFlight.push({ correlationId: req.correlationId, apiKey: req.apiKey, apiVersion: req.apiVersion, replacement });
      }
    } catch (e) {
      return this.fail(e);
    }
    return { data: out.length === 1 && out[0] ? out[0] : Buffer.concat(out), close: false };
  }

  /** Broker → client bytes. */
  onWrite(chunk: Buffer): DirectionResult {
    if (this.closed) return { data: Buffer.alloc(0), close: true };
    const out: Buffer[] = [];
    try {
      for (const frame of this.responses.push(chunk)) {
        const head = this.inFlight.shift();
        const correlationId = frame.length >= 4 ? frame.readInt32BE(0) : undefined;
        if (head === undefined || correlationId !== head.correlationId) {
          throw new KafkaError('MESHD_KAFKA_MALFORMED', `response ${String(correlationId)} does not answer the oldest request in flight (${String(head?.correlationId)})`);
        }
        if (head.replacement) out.push(head.replacement);
        else if (head.apiKey === ApiKey.ApiVersions) out.push(capApiVersions(withSize(frame), head.apiVersion));
        else out.push(withSize(frame));
      }
    } catch (e) {
      return this.fail(e);
    }
    return { data: Buffer.concat(out), close: false };
  }

  /** Fetch ≥ 7 with a session: rewritten to session_id 0, epoch -1 (a full fetch that lists its topics). */
  private sessionless(frame: Buffer, req: KafkaRequestInfo): Buffer {
    const at = req.fetchSessionOffset;
    if (req.apiKey !== ApiKey.Fetch || at === undefined) return frame;
    if (frame.readInt32BE(at) === 0 && frame.readInt32BE(at + 4) === -1) return frame;
    const copy = Buffer.from(frame);
    copy.writeInt32BE(0, at);
    copy.writeInt32BE(-1, at + 4);
    return copy;
  }
}
