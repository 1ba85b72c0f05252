/**
 * Mirror of bpf/include/drop_reasons.h: the datapath's drop reasons, stable
 * numbers that travel in flow events. drop-reasons.test.ts parses the header
 * and fails if the two drift apart.
 */
export const DropReason = {
  UNSPEC: 0,
  POLICY_DENY: 1,
  POLICY_DEFAULT_DENY: 2,
  POLICY_REVOKED: 3,
  PROXY_UNAVAILABLE: 4,
  PROXY_ASSIGN_FAILED: 5,
  PROXY_UNREACHABLE_HOOK: 6,
  INVALID_PACKET: 7,
  NO_SERVICE_BACKEND: 8,
  NAT_FAILED: 9,
} as const;

export type DropReasonName = keyof typeof DropReason;

const byNumber = new Map<number, DropReasonName>(
  (Object.keys(DropReason) as DropReasonName[]).map((name) => [DropReason[name], name]),
);

/** The reason's name, or `UNKNOWN_<n>` for a number this build does not know. */
export function dropReasonName(n: number): string {
  return byNumber.get(n) ?? `UNKNOWN_${n}`;
}
