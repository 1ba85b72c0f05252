/**
 * The watch contract between a stream and the store. A stream asks "tell me
 * when there is something to send for this (node, type, subscription), given
 * what I last sent"; the store calls `respond` exactly once (possibly before
 * `createWatch` returns) or never if cancelled. Streams create a new watch
 * after every request they process, which is what makes ACK pacing work: at
 * most one response per type is in flight.
 */
import type { SnapshotResource } from './snapshot.js';
import type { ResourceKind } from './type-urls.js';

export interface NodeInfo {
  id: string;
  cluster: string;
}

interface WatchBase {
  node: NodeInfo;
  kind: ResourceKind;
  /** Subscribed to every resource of the type. */
  wildcard: boolean;
  /** Explicitly subscribed names (besides the wildcard). */
  names: ReadonlySet<string>;
  /** Type version of the last response sent on this stream for this type ('' before the first). */
  sentVersion: string;
}

export interface SotwWatchRequest extends WatchBase {
  /** Subscription key the last response was computed for; a different one triggers a response. */
  sentSubscription: string;
}

export interface DeltaWatchRequest extends WatchBase {
  /** name → version of what the client holds (initial_resource_versions, then what was sent). */
  known: ReadonlyMap<string, string>;
}

interface WatchResponseBase {
  snapshotVersion: string;
  /** Monotonic per node group: which snapshot this answer comes from. */
  seq: number;
  /** Type version: changes exactly when the type's content changes. */
  version: string;
}

export interface SotwWatchResponse extends WatchResponseBase {
  /** The whole subscribed set (state of the world). */
  resources: SnapshotResource[];
}

export interface DeltaWatchResponse extends WatchResponseBase {
  /** Only what differs from `known`. */
  resources: SnapshotResource[];
  /** Names the client holds that are gone from the snapshot. */
  removed: string[];
}

export type Cancel = () => void;

export interface WatchSource {
  createWatch(req: SotwWatchRequest, respond: (r: SotwWatchResponse) => void): Cancel;
  createDeltaWatch(req: DeltaWatchRequest, respond: (r: DeltaWatchResponse) => void): Cancel;
  /** Current type version for this node, undefined while no snapshot is set for it. */
  typeVersion(node: NodeInfo, kind: ResourceKind): string | undefined;
  /** Resources of a type for a one-shot fetch (unary Fetch* RPCs). */
  fetch(node: NodeInfo, kind: ResourceKind, names: ReadonlySet<string>): SotwWatchResponse | undefined;
}

/** Stable key of a SotW subscription. */
export function subscriptionKey(wildcard: boolean, names: ReadonlySet<string>): string {
  return `${wildcard ? '*' : ''}|${[...names].sort().join(',')}`;
}
