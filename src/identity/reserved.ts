/**
 * Reserved security identities, numbered as Cilium numbers them, so that
 * identities seen in maps, events and traces mean the same thing in both.
 */
import type { Label } from './labels.js';

export const ReservedIdentity = {
  host: 1,
  world: 2,
  unmanaged: 3,
  health: 4,
  init: 5,
  'remote-node': 6,
  'kube-apiserver': 7,
  ingress: 8,
} as const;
export type ReservedName = keyof typeof ReservedIdentity;

export const RESERVED_NAMES: readonly ReservedName[] = ['host', 'world', 'unmanaged', 'health', 'init', 'remote-node', 'kube-apiserver', 'ingress'];

/** First identity of the cluster scope (label sets of pods and nodes). */
export const CLUSTER_IDENTITY_MIN = 256;
/** First identity of the node-local scope (CIDR and FQDN-learned prefixes), as Cilium's 1<<24. */
export const LOCAL_IDENTITY_MIN = 1 << 24;

export function reservedLabel(name: ReservedName): Label {
  return { source: 'reserved', key: name, value: '' };
}

/** The identities of the `cluster` entity besides pod identities (everything that is not world). */
export const CLUSTER_RESERVED: readonly ReservedName[] = [
  'host',
  'unmanaged',
  'health',
  'init',
  'remote-node',
  'kube-apiserver',
  'ingress',
];
