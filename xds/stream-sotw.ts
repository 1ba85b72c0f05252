/**
 * State-of-the-world xDS on one stream (ADS or a per-type service).
 *
 * Per type: the subscription (wildcard and/or names), the last response's
 * version and nonce, and whether it awaits an ACK. A request whose
 * response_nonce is not the latest one for its type is stale and ignored
 * (xDS protocol, "ACK/NACK and resource type instance version"). A NACK keeps
 * the rejected version as "sent" so it is not pushed again; the next snapshot
 * replaces it.
 *
 *   const s = new SotwStream({ source: cache, sink, tracker, log });
 *   s.receive(request); … s.close();
 */
import type { DiscoveryRequest, DiscoveryResponse } from './messages.js';
import type { SnapshotResource } from './snapshot.js';
import { type BaseTypeState, StreamBase, initialTypeState, isNonEmpty } from './stream.js';
import { REMOVAL_WAITS_FOR, type ResourceKind, TYPE_URL, WILDCARD_KINDS } from './type-urls.js';
import { type SotwWatchResponse, subscriptionKey } from './watch.js';

interface SotwTypeState extends BaseTypeState {
  wildcard: boolean;
  names: Set<string>;
  sentSubscription: string;
  /** What the last response contained (kept to hold removals back). */
  sentResources: readonly SnapshotResource[];
}

export class SotwStream extends StreamBase<DiscoveryResponse, SotwTypeState> {
  protected readonly mode = 'sotw';

  receive(req: DiscoveryRequest): void {
    const kind = this.admit(req.node, req.type_url);
    if (!kind) return;
    let st = this.states.get(kind);
    if (st && isNonEmpty(req.response_nonce) && req.response_nonce !== st.nonce) return; // stale
    if (!st) {
      st = { ...initialTypeState(), wildcard: false, names: new Set(), sentSubscription: '', sentResources: [] };
      this.states.set(kind, st);
    }
    if (isNonEmpty(req.response_nonce)) {
      if (st.pending) {
        this.settle(kind, st, req.error_detail);
      } else {
        // The latest response was already ACKed or NACKed: this is a new
        // request for what the client already has. Envoy sends one when it
        // re-creates a cluster (its EDS watch is dropped and re-added) and
        // keeps the cluster warming until it gets an answer, so answer it.
        st.sentSubscription = '';
      }
    }

    const names = req.resource_names.filter((n) => n !== '*');
    st.wildcard = req.resource_names.includes('*') || (req.resource_names.length === 0 && WILDCARD_KINDS.has(kind));
    st.names = new Set(names);

    this.rewatch(kind, st);
  }

  protected watch(kind: ResourceKind, st: SotwTypeState): void {
    this.openWatch(
      st,
      (node, done: (r: SotwWatchResponse) => void) =>
        this.opts.source.createWatch(
          { node, kind, wildcard: st.wildcard, names: st.names, sentVersion: st.sentVersion, sentSubscription: st.sentSubscription },
          done,
        ),
      (r) => this.respond(kind, st, r),
    );
  }

  private respond(kind: ResourceKind, st: SotwTypeState, r: SotwWatchResponse): void {
    let resources = r.resources;
    let version = r.version;
    let complete = true;
    if (REMOVAL_WAITS_FOR[kind] && !this.dependenciesSettled(kind)) {
      const keep = new Set(resources.map((x) => x.name));
      const removed = st.sentResources.filter((x) => !keep.has(x.name));
      if (removed.length > 0) {
        // make-before-break: keep what is going away until listeners and
        // routes stopped using it; the removal follows once they are answered.
        resources = [...resources, ...removed];
        version = `${r.version}+keep`;
        complete = false;
        st.held = true;
      }
    }
    const nonce = this.nextNonce();
    this.opts.sink.send({ version_info: version, resources: resources.map((x) => x.any), type_url: TYPE_URL[kind], nonce });
    st.sentSubscription = subscriptionKey(st.wildcard, st.names);
    st.sentResources = resources;
    this.recordSent(kind, st, r, { version, complete, nonce, resources: resources.length });
  }
}
