/**
 * Incremental (delta) xDS on one stream. Per type: the subscription
 * (wildcard and names, changed by resource_names_subscribe/unsubscribe at any
 * time, nonce or not), and `known`, the name → version map of what the client
 * holds: seeded from initial_resource_versions on the first request, then
 * updated with every response. Responses carry only what differs from
 * `known`, and removed_resources for names the client holds that are gone.
 *
 *   const s = new DeltaStream({ source: cache, sink, tracker, log });
 *   s.receive(request); … s.close();
 */
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse } from './messages.js';
import { edsServiceName } from './snapshot.js';
import { type BaseTypeState, StreamBase, initialTypeState, isNonEmpty } from './stream.js';
import { REMOVAL_WAITS_FOR, type ResourceKind, TYPE_URL } from './type-urls.js';
import type { DeltaWatchResponse } from './watch.js';

interface DeltaTypeState extends BaseTypeState {
  wildcard: boolean;
  names: Set<string>;
  known: Map<string, string>;
}

export class DeltaStream extends StreamBase<DeltaDiscoveryResponse, DeltaTypeState> {
  protected readonly mode = 'delta';

  receive(req: DeltaDiscoveryRequest): void {
    const kind = this.admit(req.node, req.type_url);
    if (!kind) return;
    let st = this.states.get(kind);
    const first = !st;
    if (!st) {
      st = {
        ...initialTypeState(),
        // legacy wildcard: a first request that names nothing wants everything
        wildcard: req.resource_names_subscribe.length === 0,
        names: new Set(),
        known: new Map(Object.entries(req.initial_resource_versions)),
      };
      this.states.set(kind, st);
    }
    if (isNonEmpty(req.response_nonce) && req.response_nonce === st.nonce) this.settle(kind, st, req.error_detail);

    // Subscription changes count whatever the nonce says.
    for (const n of req.resource_names_subscribe) {
      if (n === '*') {
        st.wildcard = true;
      } else {
        st.names.add(n);
        // subscribing to a name again asks for it again (after the first
        // request, where initial_resource_versions say what the client has)
        if (!first) st.known.delete(n);
      }
    }
    for (const n of req.resource_names_unsubscribe) {
      if (n === '*') st.wildcard = false;
      else st.names.delete(n);
      if (!st.wildcard) st.known.delete(n); // the client drops it; nothing to tell it
    }

    // A request that only changes the subscription while a response awaits
    // its ACK opens no watch: the ACK does, so one response per type is in flight.
    this.rewatch(kind, st, !st.pending);
  }

  protected watch(kind: ResourceKind, st: DeltaTypeState): void {
    this.openWatch(
      st,
      (node, done: (r: DeltaWatchResponse) => void) =>
        this.opts.source.createDeltaWatch(
          { node, kind, wildcard: st.wildcard, names: st.names, known: st.known, sentVersion: st.sentVersion },
          done,
        ),
      (r) => this.respond(kind, st, r),
    );
  }

  private respond(kind: ResourceKind, st: DeltaTypeState, r: DeltaWatchResponse): void {
    let removed = r.removed;
    let complete = true;
    if (removed.length > 0 && REMOVAL_WAITS_FOR[kind] && !this.dependenciesSettled(kind)) {
      // make-before-break: removals wait until listeners and routes moved on
      removed = [];
      complete = false;
      st.held = true;
      if (r.resources.length === 0) return; // nothing else to say yet; releaseHeld() re-watches
    }
    // EDS clusters the client had and that change now: Envoy re-creates them
    // and keeps them warming until it gets their load assignment, but a delta
    // client does not ask again for a name it is already subscribed to.
    const reloaded =
      kind === 'clusters' ? r.resources.filter((x) => st.known.has(x.name)).flatMap((x) => edsServiceName(x.json) ?? []) : [];
    const version = complete ? r.version : `${r.version}+keep`;
    const nonce = this.nextNonce();
    this.opts.sink.send({
      system_version_info: version,
      resources: r.resources.map((x) => ({ name: x.name, version: x.version, resource: x.any })),
      type_url: TYPE_URL[kind],
      removed_resources: removed,
      nonce,
    });
    for (const x of r.resources) st.known.set(x.name, x.version);
    for (const n of removed) st.known.delete(n);
    this.recordSent(kind, st, r, { version, complete, nonce, resources: r.resources.length }, removed.length);
    if (reloaded.length > 0) this.resendEndpoints(reloaded);
  }

  /** Makes the next endpoints response carry these load assignments even if unchanged. */
  private resendEndpoints(names: string[]): void {
    const eds = this.states.get('endpoints');
    if (!eds) return;
    let forced = false;
    for (const n of names) {
      if (eds.wildcard || eds.names.has(n)) forced = eds.known.delete(n) || forced;
    }
    // an open watch was computed against the old `known`: re-open it (it answers at once)
    if (forced && eds.watch && !eds.pending && !eds.held) {
      this.cancelWatch(eds);
      this.watch('endpoints', eds);
    }
  }
}
