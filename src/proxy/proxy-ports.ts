/**
 * Proxy ports: few and shared, as in Cilium — one per L7 protocol and
 * direction (HTTP ingress, HTTP egress, Kafka …, DNS egress), with filter
 * chains telling endpoints apart. Allocated from a configured range and
 * persisted, so a port stays the same across agent restarts and the policy
 * map entries that reference it never point at a moved listener.
 *
 * A state file that does not parse is moved aside and reported
 * (MESHD_STATE_FILE_CORRUPT, see util/state-file.ts); the port entries in it
 * that still parse are kept, the others are allocated afresh.
 *
 *   const ports = ProxyPorts.open({ stateFile, range: [10000, 20000] });
 *   ports.portFor('http', 'ingress');   // e.g. 10000, the same after restart
 */
import { z } from 'zod';
import type { Direction, L7Kind } from '../policy/types.js';
import { MeshdError } from '../util/errors.js';
import { readStateFile, warnCorrupt, writeStateFile, type Salvage, type StateFileCorruptError } from '../util/state-file.js';

export type ProxyPortKey = `${L7Kind}-${Direction}`;

const portSchema = z.number().int().min(1).max(65535);
const stateSchema = z.object({ version: z.literal(1), ports: z.record(z.string(), portSchema) }).strict();
type State = z.infer<typeof stateSchema>;

/** The port entries of a damaged file that still parse one by one. */
const salvagePorts: Salvage<State> = (raw) => {
  const rec = z.object({ ports: z.record(z.string(), z.unknown()) }).safeParse(raw);
  if (!rec.success) return undefined;
  const entries = Object.entries(rec.data.ports);
  const kept = entries.flatMap(([k, v]) => {
    const p = portSchema.safeParse(v);
    return p.success ? [[k, p.data] as const] : [];
  });
  return { kept: { version: 1, ports: Object.fromEntries(kept) }, dropped: entries.length - kept.length };
};

export type ProxyPortErrorCode = 'MESHD_PROXY_PORT_RANGE_EXHAUSTED' | 'MESHD_PROXY_PORT_RANGE_INVALID';

/**
 * MESHD_PROXY_PORT_RANGE_EXHAUSTED: every port of proxy.portRange is taken;
 * MESHD_PROXY_PORT_RANGE_INVALID: proxy.portRange itself is not a range.
 */
export class ProxyPortError extends MeshdError {
  constructor(code: ProxyPortErrorCode, message: string) {
    super(code, message, { kind: code === 'MESHD_PROXY_PORT_RANGE_INVALID' ? 'invalid' : 'failed' });
  }
}

export class ProxyPorts {
  private constructor(
    private readonly stateFile: string,
    private readonly range: readonly [number, number],
    private readonly ports: Map<string, number>,
  ) {}

  /**
   * Opens the state file (missing: nothing allocated yet). A corrupt one is
   * moved aside and passed to `onCorrupt` (default: a warning on stderr);
   * what was salvaged is written back at once. Read errors other than
   * "missing" are thrown.
   */
  static open(o: { stateFile: string; range: readonly [number, number]; onCorrupt?: (e: StateFileCorruptError) => void }): ProxyPorts {
    const [lo, hi] = o.range;
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 65535 || lo > hi) {
      throw new ProxyPortError('MESHD_PROXY_PORT_RANGE_INVALID', `proxy.portRange: ${lo}-${hi} is not a valid port range`);
    }
    const r = readStateFile(o.stateFile, stateSchema, salvagePorts);
    const saved = r.state === 'ok' ? r.data.ports : r.state === 'corrupt' ? (r.salvaged?.ports ?? {}) : {};
    const ports = new Map<string, number>();
    // Ports outside a narrowed range are forgotten and reallocated.
    for (const [k, p] of Object.entries(saved)) if (p >= lo && p <= hi) ports.set(k, p);
    const pp = new ProxyPorts(o.stateFile, [lo, hi], ports);
    if (r.state === 'corrupt') {
      (o.onCorrupt ?? warnCorrupt)(r.problem);
      pp.persist();
    }
    return pp;
  }

  portFor(kind: L7Kind, direction: Direction): number {
    const key: ProxyPortKey = `${kind}-${direction}`;
    const have = this.ports.get(key);
    if (have !== undefined) return have;
    const used = new Set(this.ports.values());
    for (let p = this.range[0]; p <= this.range[1]; p++) {
      if (used.has(p)) continue;
      this.ports.set(key, p);
      this.persist();
      return p;
    }
    throw new ProxyPortError('MESHD_PROXY_PORT_RANGE_EXHAUSTED', `proxy.portRange ${this.range[0]}-${this.range[1]} has no free port for ${key}`);
  }

  /** Allocated ports, for `meshd proxy list`. */
  list(): Array<{ key: ProxyPortKey; port: number }> {
    return [...this.ports].map(([key, port]) => ({ key: key as ProxyPortKey, port })).sort((a, b) => a.port - b.port);
  }

  private persist(): void {
    const state: State = { version: 1, ports: Object.fromEntries(this.ports) };
    writeStateFile(this.stateFile, state, 0o644);
  }
}
