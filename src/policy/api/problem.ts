/**
 * A problem found in a policy input, located by file, document index and
 * field path. Codes are stable strings; messages are for people.
 */
import type { ProblemCode } from '../../k8s/problem.js';
import { MeshdError } from '../../util/errors.js';

export type { ProblemCode } from '../../k8s/problem.js';
export { formatPath } from '../../k8s/problem.js';

export interface PolicyProblem {
  file?: string;
  /** 0-based index of the document within the file (multi-document YAML). */
  document?: number;
  /** Field path inside the document, e.g. `spec.ingress[0].toPorts[0].ports[0].port`. */
  path: string;
  code: ProblemCode;
  message: string;
}

export type PathSegment = string | number;

export function formatProblem(p: PolicyProblem): string {
  const where = [p.file, p.document !== undefined ? `document ${p.document}` : undefined].filter(Boolean).join(' ');
  return `${where ? `${where}: ` : ''}${p.path}: ${p.message} [${p.code}]`;
}

/** Thrown when an input that must be valid is not; carries every problem. */
export class PolicyValidationError extends MeshdError {
  constructor(readonly problems: PolicyProblem[]) {
    super('MESHD_POLICY_INVALID', problems.map(formatProblem).join('\n'), { kind: 'invalid' });
  }
}
