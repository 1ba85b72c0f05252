/**
 * One Envoy process as the proxy supervisor sees it: started detached (its
 * own session and process group, output to a log file, not waited on), so
 * that it outlives the agent that started it, and recognised again by a
 * later agent from its record: pid plus the kernel's start time of that pid
 * (a reused pid has another start time), the binary and the hash of the
 * bootstrap it runs.
 *
 *   const rec = spawnEnvoy({ id: 'e3', binary, bootstrap, workDir, args });
 *   processAlive(rec);                      // false once it exited (zombie included)
 *   await adminRequest(rec.adminSocket, '/ready');
 *   await signalAndWait(rec, 'SIGTERM', 5_000);
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import { z } from 'zod';

export const instanceRecordSchema = z.strictObject({
  /** Instance name, unique in the state directory ("e1", "e2", …). */
  id: z.string().regex(/^e\d+$/),
  pid: z.number().int().positive(),
  /** Field 22 of /proc/<pid>/stat when it was started: with the pid, names the process. */
  startTime: z.string().regex(/^\d+$/),
  binary: z.string().min(1),
  /** sha256 of the bootstrap JSON it runs. */
  bootstrapHash: z.string().regex(/^[0-9a-f]{64}$/),
  adminSocket: z.string().min(1),
  bootstrapPath: z.string().min(1),
  /** xDS node id (the agent's node name and the instance). */
  nodeId: z.string().min(1),
  startedAt: z.string(),
});
export type InstanceRecord = z.infer<typeof instanceRecordSchema>;

export function bootstrapHash(bootstrap: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify(bootstrap)).digest('hex');
}

/** State and start time of a pid from /proc/<pid>/stat, or null when there is no such process. */
export function procStat(pid: number): { state: string; startTime: string } | null {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // "pid (comm) state …": comm may hold spaces and parentheses; fields follow the last ')'.
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  const startTime = rest[19];
  if (state === undefined || startTime === undefined) return null;
  return { state, startTime };
}

/** True while the recorded process runs: same pid, same start time, not a zombie. */
export function processAlive(rec: Pick<InstanceRecord, 'pid' | 'startTime'>): boolean {
  const st = procStat(rec.pid);
  return st !== null && st.startTime === rec.startTime && st.state !== 'Z' && st.state !== 'X';
}

export interface SpawnInput {
  id: string;
  nodeId: string;
  binary: string;
  bootstrap: Record<string, unknown>;
  adminSocket: string;
  workDir: string;
  /** Envoy's command line after `-c <bootstrap>`. */
  args: readonly string[];
}

/**
 * Starts Envoy detached: a new session (setsid), stdin closed, stdout and
 * stderr appended to `<workDir>/<id>.log`. The caller records the result at
 * once, so an agent killed right after still finds the process.
 */
export function spawnEnvoy(s: SpawnInput): InstanceRecord {
  const bootstrapPath = join(s.workDir, `${s.id}.bootstrap.json`);
  writeFileSync(bootstrapPath, JSON.stringify(s.bootstrap, null, 2), { mode: 0o600 });
  rmSync(s.adminSocket, { force: true });
  const logPath = join(s.workDir, `${s.id}.log`);
  const fd = openSync(logPath, 'a', 0o600);
  try {
    const child = spawn(s.binary, ['-c', bootstrapPath, ...s.args], { detached: true, stdio: ['ignore', fd, fd] });
    child.unref();
    // A failed exec surfaces as an 'error' event; the record's process check sees it as dead.
    child.on('error', () => undefined);
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not start ${s.binary}`);
    const st = procStat(pid);
    return {
      id: s.id,
      pid,
      startTime: st?.startTime ?? '0',
      binary: s.binary,
      bootstrapHash: bootstrapHash(s.bootstrap),
      adminSocket: s.adminSocket,
      bootstrapPath,
      nodeId: s.nodeId,
      startedAt: new Date().toISOString(),
    };
  } finally {
    closeSync(fd);
  }
}

/** The last lines of an instance's log (for error messages). */
export function logTail(workDir: string, id: string, lines = 5): string {
  try {
    return readFileSync(join(workDir, `${id}.log`), 'utf8').trimEnd().split('\n').slice(-lines).join(' | ');
  } catch {
    return '';
  }
}

/** One request to an instance's admin API on its unix socket. */
export async function adminRequest(socketPath: string, path: string, method: 'GET' | 'POST' = 'GET'): Promise<{ status: number; body: string }> {
  const client = new Client('http://localhost', { socketPath });
  try {
    const res = await client.request({ path, method, headersTimeout: 5_000, bodyTimeout: 10_000 });
    return { status: res.statusCode, body: await res.body.text() };
  } finally {
    await client.close();
  }
}

/** Sum of the counters/gauges whose names match `re` in the admin API's plain stats. */
export async function statSum(socketPath: string, re: RegExp): Promise<number> {
  const r = await adminRequest(socketPath, '/stats');
  let sum = 0;
  for (const line of r.body.split('\n')) {
    const i = line.lastIndexOf(': ');
    if (i < 0 || !re.test(line.slice(0, i))) continue;
    const v = Number(line.slice(i + 2));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

/** Signals the recorded process (if it still runs) and waits up to `waitMs` for it to go. */
export async function signalAndWait(rec: InstanceRecord, sig: NodeJS.Signals, waitMs: number): Promise<boolean> {
  if (!processAlive(rec)) return reaped(rec);
  try {
    process.kill(rec.pid, sig);
  } catch {
    return !processAlive(rec);
  }
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    if (!processAlive(rec)) return reaped(rec);
    await sleep(20);
  }
  return !processAlive(rec);
}

/** Gives its parent (this process for an instance it started, else init) a moment to reap the exited process. */
async function reaped(rec: Pick<InstanceRecord, 'pid' | 'startTime'>): Promise<true> {
  const deadline = Date.now() + 1_000;
  for (let st = procStat(rec.pid); st !== null && st.startTime === rec.startTime && Date.now() < deadline; st = procStat(rec.pid)) await sleep(5);
  return true;
}

/** Pids of the Envoys that run a bootstrap of `workDir` (`-c <workDir>/<id>.bootstrap.json`), whatever their record says. */
export function envoysOfWorkDir(workDir: string): number[] {
  const out: number[] = [];
  const prefix = join(workDir, 'e');
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    const c = argv[argv.indexOf('-c') + 1];
    if (argv.includes('-c') && c !== undefined && c.startsWith(prefix) && c.endsWith('.bootstrap.json')) out.push(Number(name));
  }
  return out.sort((a, b) => a - b);
}
