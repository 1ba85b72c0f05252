/**
 * Kubernetes label selectors over plain label maps (a Service's labels, a
 * Node's labels), as LB IPAM pools and L2 announcement policies use them.
 * An unset selector selects everything; `{}` does too, as in Kubernetes.
 *
 *   matchSelector({ matchLabels: { color: 'blue' } }, svcLabels);   // true / false
 *   selectorProblems(spec.serviceSelector, ['spec', 'serviceSelector']);
 */
import type { EndpointSelectorSpec } from '../policy/api/schema.js';
import type { FieldPath, ResourceProblem } from '../k8s/problem.js';

export type LabelSelectorSpec = EndpointSelectorSpec;

export function matchSelector(sel: LabelSelectorSpec | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (!has || value === undefined || !values.includes(value)) return false;
        break;
      case 'NotIn':
        if (has && value !== undefined && values.includes(value)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/** In/NotIn need values, Exists/DoesNotExist take none (the API server's own rule for label selectors). */
export function selectorProblems(sel: LabelSelectorSpec | undefined, at: FieldPath): ResourceProblem[] {
  const out: ResourceProblem[] = [];
  sel?.matchExpressions?.forEach((e, i) => {
    const needsValues = e.operator === 'In' || e.operator === 'NotIn';
    if (needsValues !== (e.values !== undefined && e.values.length > 0)) {
      out.push({ path: [...at, 'matchExpressions', i, 'values'], code: 'INVALID_SELECTOR', message: needsValues ? `${e.operator} needs values` : `${e.operator} takes no values` });
    }
  });
  return out;
}
