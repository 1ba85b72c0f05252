/**
 * Names for the datapath's drop reasons (enum meshd_drop_reason of
 * bpf/include/drop_reasons.h, mirrored in ./abi.js and checked against the
 * compiled object's BTF), stable numbers that travel in flow events.
 */
import { DropReason } from './abi.js';

export { DropReason };

export type DropReasonName = keyof typeof DropReason;

const byNumber = new Map<number, DropReasonName>(
  (Object.keys(DropReason) as DropReasonName[]).map((name) => [DropReason[name], name]),
);

/** The reason's name, or `UNKNOWN_<n>` for a number this build does not know. */
export function dropReasonName(n: number): string {
  return byNumber.get(n) ?? `UNKNOWN_${n}`;
}
