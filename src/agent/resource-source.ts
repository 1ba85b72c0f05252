/**
 * Where the agent's view of the cluster comes from. A ResourceSource emits
 * upserts and deletes of the resource kinds the agent consumes; standalone
 * mode implements it over a directory of manifests, and the Kubernetes source
 * (a later addition) over watches, behind the same interface.
 */

export const RESOURCE_KINDS = [
  'CiliumNetworkPolicy',
  'CiliumClusterwideNetworkPolicy',
  'NetworkPolicy',
  'Namespace',
  'Pod',
  'Service',
  'EndpointSlice',
  'Node',
] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

/** "Kind/namespace/name", or "Kind/name" for cluster-scoped objects. */
export type ResourceKey = string;

export interface ResourceRef {
  kind: ResourceKind;
  namespace?: string;
  name: string;
}

export type ResourceEvent =
  | { type: 'upsert'; ref: ResourceRef; key: ResourceKey; object: Record<string, unknown>; origin: string }
  | { type: 'delete'; ref: ResourceRef; key: ResourceKey; origin: string };

/** A problem found in the input, located as precisely as the source can. */
export interface SourceProblem {
  file: string;
  document?: number;
  path?: string;
  message: string;
}

export interface ResourceSource {
  /**
   * Starts delivering events. The first batch (everything present at start)
   * is delivered before the returned promise resolves. `onBatch` receives the
   * events of one change as a unit: a consumer applies them together or not at
   * all. `onProblems` reports what was rejected (its previous state stays).
   */
  start(handlers: { onBatch(events: ResourceEvent[]): void | Promise<void>; onProblems(problems: SourceProblem[]): void }): Promise<void>;
  stop(): Promise<void>;
}

export function resourceKey(ref: ResourceRef): ResourceKey {
  return ref.namespace ? `${ref.kind}/${ref.namespace}/${ref.name}` : `${ref.kind}/${ref.name}`;
}
