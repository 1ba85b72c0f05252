/**
 * The datapath's counters (meshd_metrics, a per-CPU array; layout in
 * bpf/include/datapath.h MESHD_METRIC_*), summed over CPUs.
 *
 *   readMetrics(fd).drops        // [{ direction: 'egress', reason: 'POLICY_DENY', packets: 12n }, …]
 *   readMetrics(fd).eventsLost   // flow events a full ring buffer lost
 */
import { dropReasonName } from '../drop-reasons.js';
import { Metric } from '../maps.js';
import { perCpuCounters } from '../per-cpu.js';

export interface DatapathMetrics {
  drops: Array<{ direction: 'ingress' | 'egress'; reason: string; packets: bigint }>;
  newConnections: Record<'ingress' | 'egress', { allowed: bigint; redirected: bigint }>;
  /** Flow events the kernel could not put in the ring buffer (it was full), since the maps were created. */
  eventsLost: bigint;
}

export function readMetrics(fd: number): DatapathMetrics {
  const slot = perCpuCounters(fd);
  const drops: DatapathMetrics['drops'] = [];
  for (const dir of [0, 1] as const) {
    for (let reason = 1; reason < Metric.REASONS; reason += 1) {
      const packets = slot(Metric.drop(dir, reason));
      if (packets > 0n) drops.push({ direction: dir === 1 ? 'egress' : 'ingress', reason: dropReasonName(reason), packets });
    }
  }
  const nc = (dir: 0 | 1) => ({ allowed: slot(Metric.newAllowed(dir)), redirected: slot(Metric.newRedirected(dir)) });
  return { drops, newConnections: { ingress: nc(0), egress: nc(1) }, eventsLost: slot(Metric.EVENTS_LOST) };
}
