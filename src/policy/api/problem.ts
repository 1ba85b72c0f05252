/**
 * A problem found in a policy input, located by file, document index and
 * field path. Codes are stable strings; messages are for people.
 */
export type ProblemCode =
  | 'YAML_SYNTAX'
  | 'UNKNOWN_KIND'
  | 'UNKNOWN_FIELD'
  | 'WRONG_TYPE'
  | 'INVALID_VALUE'
  | 'MISSING_SPEC'
  | 'SELECTOR_REQUIRED'
  | 'INVALID_SELECTOR'
  | 'INVALID_REGEX'
  | 'INVALID_CIDR'
  | 'INVALID_PORT'
  | 'INVALID_PORT_RANGE'
  | 'INVALID_ICMP'
  | 'INVALID_DNS'
  | 'INVALID_KAFKA'
  | 'L7_NON_TCP'
  | 'L7_MIXED'
  | 'L7_WITHOUT_PORTS'
  | 'DNS_ON_INGRESS'
  | 'DENY_WITH_L7'
  | 'DENY_WITH_FQDN'
  | 'NODE_SELECTOR_NAMESPACED'
  | 'L7_ON_HOST';

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

export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out === '' ? '(document)' : out;
}

export function formatProblem(p: PolicyProblem): string {
  const where = [p.file, p.document !== undefined ? `document ${p.document}` : undefined].filter(Boolean).join(' ');
  return `${where ? `${where}: ` : ''}${p.path}: ${p.message} [${p.code}]`;
}

/** Thrown when an input that must be valid is not; carries every problem. */
export class PolicyValidationError extends Error {
  readonly code = 'POLICY_INVALID';
  constructor(readonly problems: PolicyProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'PolicyValidationError';
  }
}
