/**
 * The datapath's counters (meshd_metrics, a per-CPU array; layout in
 * bpf/include/datapath.h MESHD_METRIC_*), summed over CPUs.
 *
 *   readMetrics(fd).drops   // [{ direction: 'egress', reason: 'POLICY_DENY', packets: 12n }, …]
 */
import { native } from '../../../native/index.js';
import { dropReasonName } from '../drop-reasons.js';
import { Metric } from '../maps.js';

export interface DatapathMetrics {
  drops: Array<{ direction: 'ingress' | 'egress'; reason: string; packets: bigint }>;
  newConnections: Record<'ingress' | 'egress', { allowed: bigint; redirected: bigint }>;
}

export function readMetrics(fd: number): DatapathMetrics {
  const cpus = native.numPossibleCpus();
  const slot = (i: number): bigint => {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(i);
    const raw = native.mapLookup(fd, key, 8 * cpus);
    let sum = 0n;
    for (let c = 0; raw && c < cpus; c += 1) sum += raw.readBigUInt64LE(c * 8);
    return sum;
  };
  const drops: DatapathMetrics['drops'] = [];
  for (const dir of [0, 1] as const) {
    for (let reason = 1; reason < Metric.REASONS; reason += 1) {
      const packets = slot(Metric.drop(dir, reason));
      if (packets > 0n) drops.push({ direction: dir === 1 ? 'egress' : 'ingress', reason: dropReasonName(reason), packets });
    }
  }
  const nc = (dir: 0 | 1) => ({ allowed: slot(Metric.newAllowed(dir)), redirected: slot(Metric.newRedirected(dir)) });
  return { drops, newConnections: { ingress: nc(0), egress: nc(1) } };
}
