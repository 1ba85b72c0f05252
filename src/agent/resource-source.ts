/**
 * Where the agent's view of the cluster comes from. A ResourceSource parses
 * every object with its kind's module (src/k8s) and emits typed events; the
 * agent's subscribers never see unparsed JSON. Standalone mode implements it
 * over a directory of manifests, the Kubernetes source (a later addition) over
 * watches, behind the same interface.
 *
 *   await source.start({
 *     onBatch: async (events) => { for (const ev of events) if (ev.object.kind === 'Pod') … },
 *     onProblems: (problems) => log(problems),   // the objects' last good versions stay
 *   });
 */
import type { SourceStatus } from '../api/status.js';
import type { FieldPath, ProblemCode } from '../k8s/problem.js';
import type { Resource, ResourceKey, ResourceKind, ResourceRef } from '../k8s/kinds.js';

export type { Resource, ResourceKey, ResourceKind, ResourceRef } from '../k8s/kinds.js';
export { resourceKey } from '../k8s/kinds.js';

/**
 * An object appeared or changed (`upsert`, with its new parsed version), or
 * went away (`delete`, with the last version the source delivered).
 * `object.kind` discriminates the object's type.
 */
export interface ResourceEvent {
  type: 'upsert' | 'delete';
  ref: ResourceRef;
  key: ResourceKey;
  object: Resource;
  /** Where the object came from: the manifest file today, the API server later. */
  origin: string;
}

/** A problem found in the input, located as precisely as the source can. */
export interface SourceProblem {
  /** The file (relative to the manifest directory) or the API the object came from. */
  origin: string;
  /** 0-based document index within a multi-document file. */
  document?: number;
  /** The object concerned, when its kind and name could be read. */
  ref?: ResourceRef;
  /** Field path inside the object; empty when the problem is the whole document or file. */
  path: FieldPath;
  code: ProblemCode | SourceProblemCode;
  message: string;
}

export type SourceProblemCode =
  /** The directory or a file could not be read. */
  | 'SOURCE_UNREADABLE'
  /** The same object is defined twice (in one file or in two). */
  | 'DUPLICATE_OBJECT'
  /** A scan or the batch handler threw; later scans go on. */
  | 'SCAN_FAILED'
  /** A consumer could not apply an event (reported by the agent). */
  | 'APPLY_FAILED'
  /** The API server does not serve a kind (its CRD is not installed); the kind is empty until it is. */
  | 'KIND_NOT_SERVED';

export interface ResourceHandlers {
  /**
   * The events of one change, as a unit: a consumer applies them together.
   * Resolves when they are applied; the source delivers the next batch only
   * after that.
   */
  onBatch(events: ResourceEvent[]): void | Promise<void>;
  /** What was rejected; the rejected objects' previous versions stay in force. */
  onProblems(problems: SourceProblem[]): void;
}

export interface ResourceSource {
  /**
   * Starts delivering events. The first batch (everything present at start)
   * is delivered and handled before the returned promise resolves; it rejects
   * if that first batch could not be handled.
   */
  start(handlers: ResourceHandlers): Promise<void>;
  /** Stops delivering; waits for a batch in flight. Idempotent. */
  stop(): Promise<void>;
  /** Where the resources come from and, for a remote source, its connection state (for `meshd status`). */
  status(): SourceStatus;
}

/**
 * One concern of the agent (policies, services, endpoints, …): the kinds it
 * consumes and how it applies one event. The agent hands each event to the
 * subscriber of its kind, in order, inside its serial queue; a throw is
 * reported as a problem of that object and the batch goes on.
 */
export interface ResourceSubscriber {
  readonly kinds: readonly ResourceKind[];
  apply(ev: ResourceEvent): Promise<void>;
}
