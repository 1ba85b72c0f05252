/**
 * What a stream handler needs from its transport, and what they share. The
 * handlers (stream-sotw.ts, stream-delta.ts) own no resources: they keep the
 * per-type protocol state (subscription, nonce, what was sent, what is
 * awaiting an ACK) and ask a WatchSource for content. The gRPC server adapts a
 * grpc-js duplex stream to `ResponseSink`; unit tests use an array.
 */
import type { AckTracker, ResponseInfo } from './ack-tracker.js';
import type { XdsLogger } from './log.js';
import type { XdsMetrics } from './metrics.js';
import { REMOVAL_WAITS_FOR, type ResourceKind, kindOf } from './type-urls.js';
import type { Cancel, NodeInfo, WatchSource } from './watch.js';

/** Status a stream ends with; the server maps these to gRPC status codes. */
export type StreamFailure = 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION' | 'UNAVAILABLE';

export interface ResponseSink<Res> {
  /** Queues a response; never blocks (grpc-js buffers; Envoy paces us with ACKs). */
  send(res: Res): void;
  /** Ends the stream with an error status. Called at most once, after which the handler is closed. */
  fail(code: StreamFailure, message: string): void;
}

export interface StreamOptions<Res> {
  source: WatchSource;
  sink: ResponseSink<Res>;
  tracker: AckTracker;
  log: XdsLogger;
  metrics?: XdsMetrics;
  /** Set for the per-type services (LDS, CDS…): requests may omit type_url, other types are refused. */
  fixedKind?: ResourceKind;
  /** Peer description for logs. */
  peer?: string;
}

export interface BaseTypeState {
  /** Type version of the last response sent ('' before the first). */
  sentVersion: string;
  /** Nonce of the last response sent; requests carrying another non-empty nonce are stale. */
  nonce: string;
  /** The last response, until ACKed or NACKed. */
  pending: ResponseInfo | undefined;
  /** Open watch's cancel. */
  cancel: (() => void) | undefined;
  /** Identity of the open watch (a response from a replaced watch is dropped). */
  watch: object | undefined;
  /** Removals were held back: do not re-watch before the dependencies settled. */
  held: boolean;
}

/** The protocol state of a type before its first response. */
export function initialTypeState(): BaseTypeState {
  return { sentVersion: '', nonce: '', pending: undefined, cancel: undefined, watch: undefined, held: false };
}

/** What a response says besides where it came from; `recordSent` adds the rest. */
export type SentResponse = Pick<ResponseInfo, 'version' | 'complete' | 'nonce' | 'resources'>;

export abstract class StreamBase<Res, S extends BaseTypeState> {
  protected node: NodeInfo | undefined;
  protected readonly states = new Map<ResourceKind, S>();
  protected closed = false;
  private nonceSeq = 0;
  protected abstract readonly mode: 'sotw' | 'delta';

  constructor(protected readonly opts: StreamOptions<Res>) {}

  protected nextNonce(): string {
    return String(++this.nonceSeq);
  }

  /** Resolves the node (first request must carry it) and the type; fails the stream otherwise. */
  protected admit(nodeIn: { id?: string | undefined; cluster?: string | undefined } | undefined, typeUrl: string): ResourceKind | undefined {
    if (this.closed) return undefined;
    if (!this.node) {
      if (!nodeIn?.id) {
        this.fail('INVALID_ARGUMENT', 'the first request on a stream must carry node.id');
        return undefined;
      }
      this.node = { id: nodeIn.id, cluster: nodeIn.cluster ?? '' };
      this.opts.tracker.streamOpened(this.node);
      this.opts.metrics?.streams.inc({ mode: this.mode });
      this.opts.log.info('stream opened', { node: this.node.id, mode: this.mode, peer: this.opts.peer });
    }
    const fixed = this.opts.fixedKind;
    const kind = typeUrl === '' && fixed ? fixed : kindOf(typeUrl);
    if (!kind) {
      this.fail('INVALID_ARGUMENT', `unknown type_url "${typeUrl}" (served: clusters, endpoints, listeners, routes, secrets)`);
      return undefined;
    }
    if (fixed && kind !== fixed) {
      this.fail('INVALID_ARGUMENT', `type_url "${typeUrl}" on the ${fixed} service`);
      return undefined;
    }
    this.opts.metrics?.requests.inc({ type: kind, mode: this.mode });
    return kind;
  }

  /** ACK/NACK bookkeeping for a request whose nonce matches the last response. */
  protected settle(kind: ResourceKind, st: S, error: { code?: number | undefined; message?: string | undefined } | undefined): void {
    const node = this.node;
    const info = st.pending;
    if (!node || !info) return;
    st.pending = undefined;
    const isNack = error !== undefined && ((error.code ?? 0) !== 0 || (error.message ?? '') !== '');
    if (!isNack) {
      this.opts.log.info('ACK', { node: node.id, type: kind, version: info.version, nonce: info.nonce, mode: this.mode });
      this.opts.tracker.acked(node, kind, info);
      this.opts.metrics?.acks.inc({ type: kind });
      return;
    }
    const message = error.message ?? `code ${error.code ?? 0}`;
    this.opts.metrics?.nacks.inc({ type: kind });
    // The last good version stays in force at the client; we do not resend the
    // rejected one (sentVersion keeps it), and the next snapshot replaces it.
    if (this.opts.tracker.nacked(node, kind, info, message)) {
      this.opts.log.warn('xDS update rejected (NACK)', {
        node: node.id,
        type: kind,
        version: info.version,
        snapshot: info.snapshotVersion,
        mode: this.mode,
        message,
      });
    }
  }

  /**
   * Books a response that was just sent: it is the type's latest (its nonce
   * makes older requests stale) and awaits an ACK. `from` is the watch answer
   * it was built from; `removed` counts delta removals, for the log.
   */
  protected recordSent(kind: ResourceKind, st: S, from: Pick<ResponseInfo, 'snapshotVersion' | 'seq'>, sent: SentResponse, removed = 0): void {
    const info: ResponseInfo = { ...sent, snapshotVersion: from.snapshotVersion, seq: from.seq, at: new Date() };
    this.opts.log.info('response', {
      node: this.node?.id,
      type: kind,
      version: info.version,
      nonce: info.nonce,
      resources: info.resources,
      removed,
      complete: info.complete,
      mode: this.mode,
    });
    st.sentVersion = info.version;
    st.nonce = info.nonce;
    st.pending = info;
    if (this.node) this.opts.tracker.sent(this.node, kind, info);
    this.opts.metrics?.responses.inc({ type: kind, mode: this.mode });
  }

  /**
   * Removals of `kind` may go out when every kind it waits for that this
   * stream subscribes to was sent at the current snapshot and answered.
   * Only an aggregated stream sees the other types; per-type streams do not wait.
   */
  protected dependenciesSettled(kind: ResourceKind): boolean {
    const node = this.node;
    if (!node || this.opts.fixedKind) return true;
    for (const dep of REMOVAL_WAITS_FOR[kind] ?? []) {
      const st = this.states.get(dep);
      if (!st) continue;
      if (st.pending) return false;
      if (st.sentVersion !== this.opts.source.typeVersion(node, dep)) return false;
    }
    return true;
  }

  /** Re-opens watches held for make-before-break once their dependencies settled. */
  protected releaseHeld(): void {
    for (const [kind, st] of this.states) {
      if (st.held && !st.pending && this.dependenciesSettled(kind)) {
        st.held = false;
        this.watch(kind, st);
      }
    }
  }

  /** Opens the type's watch for what the stream holds now; the answer goes out through `respond`. */
  protected abstract watch(kind: ResourceKind, st: S): void;

  /**
   * After a request: replaces the type's watch, unless `mayWatch` is false or
   * held-back removals still wait for their dependencies, then re-opens every
   * other held watch whose dependencies settled meanwhile.
   */
  protected rewatch(kind: ResourceKind, st: S, mayWatch = true): void {
    this.cancelWatch(st);
    if (mayWatch && (!st.held || this.dependenciesSettled(kind))) {
      st.held = false;
      this.watch(kind, st);
    }
    this.releaseHeld();
  }

  /**
   * Opens a watch with `create` and hands its answer to `respond`, unless the
   * watch was replaced or the stream closed first. The source may answer
   * before `create` returns; the watch is then over and there is nothing to
   * cancel.
   */
  protected openWatch<R>(st: S, create: (node: NodeInfo, done: (r: R) => void) => Cancel, respond: (r: R) => void): void {
    const node = this.node;
    if (!node || this.closed) return;
    const token = {};
    st.watch = token;
    const cancel = create(node, (r) => {
      if (st.watch !== token || this.closed) return;
      st.watch = undefined;
      st.cancel = undefined;
      respond(r);
    });
    if (st.watch === token) st.cancel = cancel;
  }

  protected cancelWatch(st: S): void {
    st.watch = undefined;
    st.cancel?.();
    st.cancel = undefined;
  }

  /** Ends the stream with an error (also used by the transport for undecodable requests). */
  fail(code: StreamFailure, message: string): void {
    if (this.closed) return;
    this.opts.metrics?.streamErrors.inc({ code });
    this.opts.log.warn('xDS stream failed', { node: this.node?.id, code, message, mode: this.mode, peer: this.opts.peer });
    this.close();
    this.opts.sink.fail(code, message);
  }

  /** Idempotent. Cancels every watch; the handler ignores everything afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const st of this.states.values()) this.cancelWatch(st);
    if (this.node) {
      this.opts.tracker.streamClosed(this.node);
      this.opts.metrics?.streams.dec({ mode: this.mode });
    }
  }
}

export function isNonEmpty(s: string | undefined): s is string {
  return s !== undefined && s !== '';
}
