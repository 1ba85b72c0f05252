/**
 * The constants the agent shares with the BPF programs, mirrored once from the
 * C enums of bpf/include/datapath.h, drop_reasons.h, lb.h and probe.h.
 *
 * Each table holds the members of one C enum with the enum's prefix removed
 * (`MESHD_VERDICT_DENY` is `VerdictCode.DENY`), and `abiEnums` lists every
 * table with its enum. test/integration/bpf-abi.test.ts compares each table
 * with the enum in the compiled objects' BTF, and fails when a value differs,
 * a member is missing on either side, or a `meshd_*` enum has no table here.
 * The structs' codecs are checked the same way (maps.ts, lb-maps.ts).
 *
 *   import { Dir, DropReason, Metric } from './abi.js';
 *   Metric.drop(Dir.EGRESS, DropReason.POLICY_DENY);   // the meshd_metrics slot: 17
 */
import { MeshdError } from '../util/errors.js';

/** Reserved identities (enum meshd_identity_reserved). */
export const Identity = { UNKNOWN: 0, HOST: 1, WORLD: 2, REMOTE_NODE: 6 } as const;

/** Direction from the endpoint's point of view (enum meshd_dir). */
export const Dir = { INGRESS: 0, EGRESS: 1 } as const;
export type DirCode = (typeof Dir)[keyof typeof Dir];

/** Verdicts in policy and conntrack values (enum meshd_verdict). */
export const VerdictCode = { ALLOW: 1, DENY: 2, REDIRECT: 3 } as const;

/** meshd_endpoint.flags (enum meshd_ep_flag). */
export const EndpointFlag = { DEFAULT_DENY_INGRESS: 1, DEFAULT_DENY_EGRESS: 2 } as const;

/** meshd_config.flags (enum meshd_cfg_flag). */
export const ConfigFlag = { PER_PACKET_LB: 1, SOCKMAP_SHORTCUT: 2, POLICY_AUDIT: 4, TUNNEL: 8, HOST_FIREWALL: 16 } as const;

/** meshd_ct_entry.flags (enum meshd_ct_flag): remote_identity is stored, not the ipcache's (proxy mark, or a VIP kept for the proxy). */
export const CtFlag = { STORED_IDENTITY: 1, FROM_TUNNEL: 2 } as const;

/**
 * The skb mark layout shared by the datapath, the node proxy (SO_MARK) and the
 * policy routing rule (enum meshd_mark): a magic in bits 8..11; with
 * MAGIC_IDENTITY the source identity's bits 0..15 in bits 16..31 and its bits
 * 16..23 in bits 0..7. MAGIC_PROXY is the default proxy mark.
 */
export const Mark = {
  MAGIC_MASK: 0x0f00,
  MAGIC_IDENTITY: 0x0a00,
  MAGIC_PROXY: 0x0b00,
  /** Set by the overlay's ingress: the identity came in the tunnel key's VNI. */
  MAGIC_TUNNEL: 0x0c00,
  IDENTITY_SHIFT: 16,
  IDENTITY_HIGH_MASK: 0xff,
} as const;

/** The mark the node proxy puts on its upstream sockets (SO_MARK) so the
 * destination's ingress policy judges the original client's identity
 * (bpf/lxc.c meshd_identity_from_mark is the inverse). */
export function proxyUpstreamMark(identity: number): number {
  if (!Number.isInteger(identity) || identity < 0 || identity > 0xffffff) {
    throw new MeshdError('MESHD_MARK_IDENTITY_RANGE', `identity ${identity} does not fit the 24 bits of the mark`, { kind: 'invalid' });
  }
  const low = (identity & 0xffff) << Mark.IDENTITY_SHIFT;
  const high = (identity >>> Mark.IDENTITY_SHIFT) & Mark.IDENTITY_HIGH_MASK;
  return (low | Mark.MAGIC_IDENTITY | high) >>> 0;
}

/** meshd_metrics layout (enum meshd_metric); use `Metric` for slot numbers. */
export const MetricSlot = { REASONS: 16, NEW_ALLOWED_BASE: 32, NEW_REDIRECTED_BASE: 34, EVENTS_LOST: 36, MAX: 37 } as const;

/** meshd_metrics slots, as the MESHD_METRIC_* macros of bpf/include/datapath.h compute them. */
export const Metric = {
  REASONS: MetricSlot.REASONS,
  drop: (dir: DirCode, reason: number): number => dir * MetricSlot.REASONS + (reason & (MetricSlot.REASONS - 1)),
  newAllowed: (dir: DirCode): number => MetricSlot.NEW_ALLOWED_BASE + dir,
  newRedirected: (dir: DirCode): number => MetricSlot.NEW_REDIRECTED_BASE + dir,
  /** Flow events the ring buffer had no room for. */
  EVENTS_LOST: MetricSlot.EVENTS_LOST,
  MAX: MetricSlot.MAX,
} as const;

/** meshd_flow_event.type (enum meshd_event_type). */
export const EventType = { DROP: 1, VERDICT: 2, REDIRECT: 3, AUDIT: 4 } as const;

/** meshd_nat_key.dir (enum meshd_nat_dir). */
export const NatDir = { FWD: 0, REV: 1 } as const;

/** meshd_sk_stats slots of the sockops short-circuit (enum meshd_sk_stat). */
export const SkStat = { INSERTED: 0, REDIRECTED: 1, PASSED: 2, MAX: 3 } as const;

/** The host firewall (enum meshd_host): the host endpoint's key in meshd_endpoints (the loopback ifindex). */
export const Host = { EP_KEY: 1 } as const;
/** meshd_steer_stats slots of the proxy steering, and the slots per port and family (enum meshd_steer_stat). */
export const SteerStat = { TC_MAP: 0, TC_LOOKUP: 1, SELECTED: 2, UNSTEERED: 3, STATS: 4, MAX_SLOTS: 32 } as const;

/** Drop reasons (enum meshd_drop_reason): stable numbers in flow events and metrics. */
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
  /** Tunnel mode: not encapsulated, or arrived from the tunnel without a usable key. */
  TUNNEL_FAILED: 10,
} as const;
/** One past the last drop reason (MESHD_DROP_MAX). */
export const DROP_REASON_MAX = 11;

/** Socket-LB limits (enum meshd_lb_limit): Maglev table size, backend slots per service. */
export const LbLimit = { MAGLEV_M: 1021, MAX_SLOTS: 4096 } as const;

/** meshd_lb_svc_value.flags (enum meshd_lb_flag). */
export const LbFlag = { AFFINITY: 0x1, MAGLEV: 0x2 } as const;

/** meshd_lb_svc_value.scope (enum meshd_lb_scope). */
export const LbScope = { CLUSTER_IP: 0, NODE_PORT: 1, EXTERNAL_IP: 2, LB_INGRESS: 3 } as const;

/** meshd_lb_stats slots (enum meshd_lb_stat). */
export const LbStatSlot = { XLATED: 0, REFUSED: 1, SKIPPED_NS: 2, AFFINITY: 3, REVNAT: 4, MAX: 8 } as const;

/** meshd_np_stats slots (enum meshd_np_stat): the per-packet path for clients outside the node (bpf/nodeport.c). */
export const NpStatSlot = { XLATED: 0, REVNAT: 1, NO_BACKEND: 2, SNAT: 3, SNAT_FAILED: 4, MAX: 8 } as const;

/** meshd_np_nat_value.flags (enum meshd_np_flag). */
export const NpFlag = { SNAT: 0x1 } as const;

/** bpf/probe.c's marker (enum meshd_probe). */
export const Probe = { MAGIC: 0x6d657368 } as const;

/** A TypeScript table and the C enum it mirrors. */
export interface AbiEnum {
  /** The C enum's tag, as BTF names it. */
  readonly cName: string;
  /** What every C member's name has before the table's key. */
  readonly prefix: string;
  readonly values: Readonly<Record<string, number>>;
}

/** Every table above with its C enum, for the check against the objects' BTF. */
export const abiEnums: readonly AbiEnum[] = [
  { cName: 'meshd_identity_reserved', prefix: 'MESHD_ID_', values: Identity },
  { cName: 'meshd_dir', prefix: 'MESHD_DIR_', values: Dir },
  { cName: 'meshd_verdict', prefix: 'MESHD_VERDICT_', values: VerdictCode },
  { cName: 'meshd_ep_flag', prefix: 'MESHD_EP_', values: EndpointFlag },
  { cName: 'meshd_cfg_flag', prefix: 'MESHD_CFG_', values: ConfigFlag },
  { cName: 'meshd_ct_flag', prefix: 'MESHD_CT_F_', values: CtFlag },
  { cName: 'meshd_mark', prefix: 'MESHD_MARK_', values: Mark },
  { cName: 'meshd_metric', prefix: 'MESHD_METRIC_', values: MetricSlot },
  { cName: 'meshd_event_type', prefix: 'MESHD_EVENT_', values: EventType },
  { cName: 'meshd_nat_dir', prefix: 'MESHD_NAT_', values: NatDir },
  { cName: 'meshd_sk_stat', prefix: 'MESHD_SK_STAT_', values: SkStat },
  { cName: 'meshd_host', prefix: 'MESHD_HOST_', values: Host },
  { cName: 'meshd_steer_stat', prefix: 'MESHD_STEER_', values: SteerStat },
  { cName: 'meshd_drop_reason', prefix: 'MESHD_DROP_', values: { ...DropReason, MAX: DROP_REASON_MAX } },
  { cName: 'meshd_lb_limit', prefix: 'MESHD_LB_', values: LbLimit },
  { cName: 'meshd_lb_flag', prefix: 'MESHD_LB_F_', values: LbFlag },
  { cName: 'meshd_lb_scope', prefix: 'MESHD_LB_SCOPE_', values: LbScope },
  { cName: 'meshd_lb_stat', prefix: 'MESHD_LB_STAT_', values: LbStatSlot },
  { cName: 'meshd_np_stat', prefix: 'MESHD_NP_STAT_', values: NpStatSlot },
  { cName: 'meshd_np_flag', prefix: 'MESHD_NP_F_', values: NpFlag },
  { cName: 'meshd_probe', prefix: 'MESHD_PROBE_', values: Probe },
];
