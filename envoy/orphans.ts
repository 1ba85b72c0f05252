/**
 * Envoys left behind by a previous agent. An agent killed without a chance to
 * stop its Envoy leaves that Envoy running (it is not tied to its parent's
 * life), still bound to the proxy ports, so a new Envoy's listeners would
 * fail to bind. Such a process is recognised by its command line: it runs the
 * bootstrap file of this state directory, which no other process uses.
 *
 *   const stale = findEnvoyProcesses(join(workDir, 'bootstrap.json'));
 *   await stopProcesses(stale);   // SIGTERM, then SIGKILL after graceMs
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Pids (other than this process) whose argv contains `-c <bootstrapPath>`. */
export function findEnvoyProcesses(bootstrapPath: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone, or not ours to read
    }
    const i = argv.indexOf('-c');
    if (i >= 0 && argv[i + 1] === bootstrapPath) out.push(pid);
  }
  return out.sort((a, b) => a - b);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM each pid, SIGKILL those still alive after `graceMs`; resolves when all are gone. */
export async function stopProcesses(pids: readonly number[], graceMs = 3000): Promise<void> {
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await sleep(50);
  for (const pid of pids.filter(alive)) signal(pid, 'SIGKILL');
  while (pids.some(alive)) await sleep(20);
}
