/**
 * Drives test/helpers/datapath-peer.py (servers, clients, a transparent
 * listener) inside or outside a namespace for the datapath's kernel tests.
 *
 *   const srv = await startPeer(sb, ns, ['serve', 'B', '80']);   // waits for "ready"; killed by sb.cleanup()
 *   await srv.waitFor(/^accept 80 /);
 *   const r = await connectFrom(sb, nsA, '10.1.0.6', 80);        // "B 80 10.1.0.2" | "TIMEOUT" | "REFUSED"
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { CommandError, run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import type { Sandbox } from '../../src/devcluster/netns.js';


/** How long a peer may take to start and say it is ready. */
export const PEER_START_MS = 30_000;
export const PEER = repoPath('test', 'helpers', 'datapath-peer.py');

export interface Peer {
  lines: string[];
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  count(re: RegExp): number;
  send(line: string): void;
  kill(): Promise<void>;
  proc: ChildProcessWithoutNullStreams;
}

export async function startPeer(sb: Sandbox | null, ns: string | null, args: string[]): Promise<Peer> {
  const argv = ns ? ['netns', 'exec', ns, 'python3', '-u', PEER, ...args] : ['python3', '-u', PEER, ...args];
  const proc = spawn(ns ? 'ip' : 'python3', ns ? argv : argv.slice(1));
  const lines: string[] = [];
  let waiters: Array<() => void> = [];
  let buf = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    lines.push(...parts);
    for (const w of waiters) w();
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  let exited = false;
  const exit = new Promise<void>((resolve) => proc.on('exit', () => ((exited = true), resolve())));
  const kill = async () => {
    if (exited) return;
    proc.kill('SIGKILL');
    await exit;
  };
  sb?.defer(kill);
  const waitFor = (re: RegExp, timeoutMs = 5000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const hit = lines.find((l) => re.test(l));
        if (hit !== undefined) {
          waiters = waiters.filter((w) => w !== check);
          clearTimeout(timer);
          resolve(hit);
        }
      };
      const timer = setTimeout(() => {
        waiters = waiters.filter((w) => w !== check);
        reject(new Error(`peer ${args.join(' ')}: no line matching ${re} within ${timeoutMs} ms; got ${JSON.stringify(lines)}; stderr ${stderr}`));
      }, timeoutMs);
      waiters.push(check);
      check();
    });
  const peer: Peer = {
    lines,
    waitFor,
    count: (re) => lines.filter((l) => re.test(l)).length,
    send: (line) => proc.stdin.write(`${line}\n`),
    kill,
    proc,
  };
  // Starting the interpreter in a namespace took over 5 s on a loaded 2-core machine: a generous bound for that alone.
  if (args[0] !== 'hold' && args[0] !== 'loop') await waitFor(/^ready$/, PEER_START_MS);
  return peer;
}

/** One TCP (or UDP) exchange from a namespace: the server's greeting, "TIMEOUT" or "REFUSED". */
export async function connectFrom(sb: Sandbox, ns: string, ip: string, port: number, opts: { udp?: boolean; timeoutS?: number } = {}): Promise<string> {
  try {
    const r = await sb.exec(ns, 'python3', [PEER, opts.udp ? 'uconnect' : 'connect', ip, String(port), String(opts.timeoutS ?? 1.5)], 15_000);
    return r.stdout.trim();
  } catch (e) {
    if (e instanceof CommandError && (e.exitCode === 2 || e.exitCode === 3)) return e.exitCode === 2 ? 'TIMEOUT' : 'REFUSED';
    throw e;
  }
}

/** One ICMP echo request from namespace `ns` to `ip`: 'reply 0' (an echo reply), or 'TIMEOUT'. */
export async function pingFrom(sb: Sandbox, ns: string, ip: string, timeoutS = 1): Promise<string> {
  try {
    return (await sb.exec(ns, 'python3', [PEER, 'ping', ip, String(timeoutS)], 15_000)).stdout.trim();
  } catch (e) {
    if (e instanceof CommandError && e.exitCode === 2) return 'TIMEOUT';
    throw e;
  }
}

/** The same from the host namespace, optionally with SO_MARK (as the proxy's upstream). */
export async function connectFromHost(ip: string, port: number, timeoutS = 1.5): Promise<string> {
  try {
    const r = await run('python3', [PEER, 'connect', ip, String(port), String(timeoutS)], { timeoutMs: 15_000 });
    return r.stdout.trim();
  } catch (e) {
    if (e instanceof CommandError && (e.exitCode === 2 || e.exitCode === 3)) return e.exitCode === 2 ? 'TIMEOUT' : 'REFUSED';
    throw e;
  }
}
