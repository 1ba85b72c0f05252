/**
 * Watches the proxy mark's policy routing (src/proxy/policy-routing.ts) without
 * polling: one long-lived `ip monitor rule route` reports every rule and route
 * change of the host namespace, and a deletion that names the proxy's table
 * (an uninstall, an operator's flush, another tool's cleanup) calls `onLost`
 * at once. Checking by running `ip` every few seconds instead started two
 * processes each time, and starting a process stalls the agent's event loop
 * (and the DNS proxy's answers) for milliseconds; repairs came up to a whole
 * period late.
 *
 *   const w = RoutingWatch.start({ table: 2004, onLost: () => void ensurePolicyRouting(), log });
 *   w.stop();
 *
 * If the monitor exits it is started again after a second; the caller keeps a
 * slow periodic check as a fallback. Should the agent die without stop(), the
 * orphaned monitor exits at the next routing change it reports (its pipe is
 * gone: EPIPE).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Logger } from '../util/log.js';

export interface RoutingWatchOptions {
  table: number;
  onLost(): void;
  log: Logger;
}

/** Whether a line of `ip monitor rule route` reports a deleted rule or route of `table`. */
export function reportsLoss(line: string, table: number): boolean {
  return line.startsWith('Deleted') && (new RegExp(`\\blookup ${table}\\b`).test(line) || new RegExp(`\\btable ${table}\\b`).test(line));
}

export class RoutingWatch {
  private proc: ChildProcess | null = null;
  private restart: NodeJS.Timeout | null = null;
  private stopped = false;

  private constructor(private readonly o: RoutingWatchOptions) {}

  static start(o: RoutingWatchOptions): RoutingWatch {
    const w = new RoutingWatch(o);
    w.spawn();
    return w;
  }

  private spawn(): void {
    const p = spawn('ip', ['monitor', 'rule', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.proc = p;
    let buf = '';
    p.stdout?.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      if (lines.some((l) => reportsLoss(l, this.o.table))) this.o.onLost();
    });
    p.on('error', (e) => this.o.log.warn('ip monitor for the DNS proxy routing', { err: e }));
    p.on('exit', () => {
      if (this.proc === p) this.proc = null;
      if (this.stopped) return;
      this.restart = setTimeout(() => {
        this.restart = null;
        if (!this.stopped) this.spawn();
      }, 1000);
      this.restart.unref();
    });
    // The agent's other work keeps it alive; the monitor does not.
    p.unref();
    const out = p.stdout as (NodeJS.ReadableStream & { unref?: () => void }) | null;
    out?.unref?.();
  }

  /** Idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.restart) clearTimeout(this.restart);
    this.restart = null;
    this.proc?.kill('SIGKILL');
    this.proc = null;
  }
}
