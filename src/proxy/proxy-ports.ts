/**
 * Proxy ports: few and shared, as in Cilium — one per L7 protocol and
 * direction (HTTP ingress, HTTP egress, Kafka …, DNS egress), with filter
 * chains telling endpoints apart. Allocated from a configured range and
 * persisted, so a port stays the same across agent restarts and the policy
 * map entries that reference it never point at a moved listener.
 *
 *   const ports = ProxyPorts.open({ stateFile, range: [10000, 20000] });
 *   ports.portFor('http', 'ingress');   // e.g. 10000, the same after restart
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import type { Direction, L7Kind } from '../policy/types.js';

export type ProxyPortKey = `${L7Kind}-${Direction}`;

const stateSchema = z.object({ version: z.literal(1), ports: z.record(z.string(), z.number().int().min(1).max(65535)) }).strict();

export class ProxyPortError extends Error {
  constructor(
    readonly code: 'PROXY_PORT_RANGE_EXHAUSTED' | 'PROXY_PORT_STATE_INVALID' | 'PROXY_PORT_RANGE_INVALID',
    message: string,
  ) {
    super(message);
  }
}

export class ProxyPorts {
  private constructor(
    private readonly stateFile: string,
    private readonly range: readonly [number, number],
    private readonly ports: Map<string, number>,
  ) {}

  static open(o: { stateFile: string; range: readonly [number, number] }): ProxyPorts {
    const [lo, hi] = o.range;
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 65535 || lo > hi) {
      throw new ProxyPortError('PROXY_PORT_RANGE_INVALID', `proxy.portRange: ${lo}-${hi} is not a valid port range`);
    }
    const ports = new Map<string, number>();
    let raw: string | undefined;
    try {
      raw = readFileSync(o.stateFile, 'utf8');
    } catch {
      raw = undefined;
    }
    if (raw !== undefined) {
      const parsed = stateSchema.safeParse(JSON.parse(raw));
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new ProxyPortError('PROXY_PORT_STATE_INVALID', `${o.stateFile}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
      }
      // Ports outside a narrowed range are forgotten and reallocated.
      for (const [k, p] of Object.entries(parsed.data.ports)) if (p >= lo && p <= hi) ports.set(k, p);
    }
    return new ProxyPorts(o.stateFile, [lo, hi], ports);
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
    throw new ProxyPortError('PROXY_PORT_RANGE_EXHAUSTED', `proxy.portRange ${this.range[0]}-${this.range[1]} has no free port for ${key}`);
  }

  /** Allocated ports, for `meshd proxy list`. */
  list(): Array<{ key: ProxyPortKey; port: number }> {
    return [...this.ports].map(([key, port]) => ({ key: key as ProxyPortKey, port })).sort((a, b) => a.port - b.port);
  }

  private persist(): void {
    mkdirSync(dirname(this.stateFile), { recursive: true });
    const tmp = `${this.stateFile}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ version: 1, ports: Object.fromEntries(this.ports) }, null, 2));
    renameSync(tmp, this.stateFile);
  }
}
