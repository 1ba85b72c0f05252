/**
 * Policy kinds (NetworkPolicy, CiliumNetworkPolicy,
 * CiliumClusterwideNetworkPolicy) → the policy engine, and the per-policy
 * status `meshd policy get` shows. Objects arrive parsed and validated by the
 * source; a policy the source rejected keeps its last good version in the
 * engine and is listed with its problems. A listener (the Kubernetes policy
 * status writer) hears every change of a policy's state.
 */
import { formatPath } from '../k8s/problem.js';
import { policyDocument, policyKey } from '../policy/api/loader.js';
import type { PolicyStatusChange } from '../k8s/policy-status.js';
import type { PolicyEngine } from '../policy/index.js';
import type { ResourceEvent, ResourceKey, ResourceKind, ResourceSubscriber, SourceProblem } from './resource-source.js';
import { resourceKey } from './resource-source.js';

export interface PolicyStatus {
  key: string;
  origin: string;
  state: 'enforced' | 'rejected';
  problems: Array<{ path: string; message: string }>;
}

/** Hears each change of a policy's state on this node; must not throw or block. */
export type PolicyStatusListener = (change: PolicyStatusChange) => void;

/** metadata.generation, which Kubernetes bumps on every spec change (status writes leave it alone). */
function generationOf(metadata: Record<string, unknown>): number | undefined {
  const g = metadata.generation;
  return typeof g === 'number' ? g : undefined;
}

const POLICY_KINDS = ['NetworkPolicy', 'CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy'] as const satisfies readonly ResourceKind[];
const isPolicyKind = (k: ResourceKind): boolean => POLICY_KINDS.some((p) => p === k);

export class PolicySubscriber implements ResourceSubscriber {
  readonly kinds = POLICY_KINDS;
  private readonly status = new Map<ResourceKey, PolicyStatus>();
  /** Generation of the version enforced, per policy (objects from the API server only). */
  private readonly generations = new Map<ResourceKey, number>();

  constructor(
    private readonly engine: PolicyEngine,
    private readonly listener?: PolicyStatusListener,
  ) {}

  async apply(ev: ResourceEvent): Promise<void> {
    const o = ev.object;
    if (o.kind !== 'NetworkPolicy' && o.kind !== 'CiliumNetworkPolicy' && o.kind !== 'CiliumClusterwideNetworkPolicy') return;
    if (ev.type === 'delete') {
      const prev = this.status.get(ev.key);
      if (prev?.state === 'enforced') await this.engine.removePolicy(prev.key);
      this.status.delete(ev.key);
      this.generations.delete(ev.key);
      this.listener?.({ ref: ev.ref, deleted: true, ok: false, enforcing: false, problems: [] });
      return;
    }
    const generation = generationOf(o.metadata);
    const prev = this.status.get(ev.key);
    // A status write (ours or another node's) changes the object but not its generation: nothing to enforce anew.
    const same = generation !== undefined && prev?.state === 'enforced' && prev.problems.length === 0 && this.generations.get(ev.key) === generation;
    const doc = policyDocument(o);
    if (!same) await this.engine.upsertPolicy(doc);
    this.status.set(ev.key, { key: policyKey(doc), origin: ev.origin, state: 'enforced', problems: [] });
    if (generation === undefined) this.generations.delete(ev.key);
    else this.generations.set(ev.key, generation);
    this.listener?.({ ref: ev.ref, ok: true, enforcing: true, generation, problems: [], reported: 'status' in o ? o.status : undefined });
  }

  /** Marks the policies a source rejected: an enforced one stays enforced (its last good version), a new one is listed as rejected. */
  noteProblems(problems: readonly SourceProblem[]): void {
    const byKey = new Map<ResourceKey, SourceProblem[]>();
    for (const p of problems) {
      if (!p.ref || !isPolicyKind(p.ref.kind)) continue;
      const key = resourceKey(p.ref);
      byKey.set(key, [...(byKey.get(key) ?? []), p]);
    }
    for (const [key, ps] of byKey) {
      const prev = this.status.get(key);
      this.status.set(key, {
        key: prev?.key ?? key,
        origin: ps[0]?.origin ?? prev?.origin ?? '',
        state: prev?.state === 'enforced' ? 'enforced' : 'rejected',
        problems: ps.map((p) => ({ path: formatPath(p.path), message: p.message })),
      });
      const ref = ps[0]?.ref;
      if (ref) this.listener?.({ ref, ok: false, enforcing: prev?.state === 'enforced', problems: ps.map((p) => ({ path: formatPath(p.path), code: p.code, message: p.message })) });
    }
  }

  statuses(): PolicyStatus[] {
    return [...this.status.values()];
  }
}
