/**
 * Small network programs run inside a test pod's namespace (node as the
 * process, `ip netns exec` as the door): a TCP echo server, a one-shot connect
 * probe, and a long-lived client that answers pings. Every process is
 * registered with the caller's cleanup.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

interface After {
  after(fn: () => Promise<void> | void): void;
}

function inNs(ns: string, script: string, args: string[] = []): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
}

async function firstLine(child: ChildProcess, timeoutMs: number): Promise<string> {
  const rl = createInterface({ input: child.stdout! });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    const [line] = (await Promise.race([once(rl, 'line'), once(child, 'exit').then(() => ['exited'])])) as [string];
    return line;
  } finally {
    clearTimeout(timer);
    rl.close();
  }
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await once(child, 'exit');
  };
}

const ECHO = `
const net = require('net');
const ports = process.argv.slice(1).map(Number);
let up = 0;
for (const p of ports) net.createServer((s) => { s.on('data', (d) => s.write(d)); s.on('error', () => {}); }).listen(p, '0.0.0.0', () => { if (++up === ports.length) console.log('ready'); });
`;

/** TCP echo servers on the given ports inside `ns`. */
export async function echoServer(t: After, ns: string, ports: number[]): Promise<void> {
  const child = inNs(ns, ECHO, ports.map(String));
  t.after(stopper(child));
  const line = await firstLine(child, 10_000);
  if (line !== 'ready') throw new Error(`echo server in ${ns} did not start (${line})`);
}

const PROBE = `
const net = require('net');
const [ip, port, ms] = process.argv.slice(1);
const s = net.connect({ host: ip, port: Number(port) });
const done = (r) => { console.log(r); process.exit(0); };
s.setTimeout(Number(ms), () => done('timeout'));
s.on('connect', () => { s.write('hi'); s.once('data', () => done('connected')); });
s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code || 'error'));
`;

/** Opens a TCP connection from `ns` and exchanges one message: 'connected', 'timeout', 'refused', or an error code. */
export async function tryConnect(ns: string, ip: string, port: number, timeoutMs = 1500): Promise<string> {
  const child = inNs(ns, PROBE, [ip, String(port), String(timeoutMs)]);
  return firstLine(child, timeoutMs + 10_000);
}

const LONG = `
const net = require('net');
const readline = require('readline');
const [ip, port] = process.argv.slice(1);
const s = net.connect({ host: ip, port: Number(port) }, () => console.log('open'));
s.on('error', (e) => console.log('error ' + e.code));
s.on('close', () => console.log('closed'));
let n = 0;
readline.createInterface({ input: process.stdin }).on('line', () => {
  const msg = 'ping' + (++n);
  const timer = setTimeout(() => console.log('noreply'), 2000);
  s.once('data', (d) => { clearTimeout(timer); console.log(d.toString() === msg ? 'pong' : 'bad'); });
  s.write(msg);
});
`;

/** A connection that stays open; ping() sends a message and resolves true when it is echoed. */
export async function longLivedConnection(t: After, ns: string, ip: string, port: number): Promise<{ ping(): Promise<boolean> }> {
  const child = inNs(ns, LONG, [ip, String(port)]);
  t.after(stopper(child));
  const rl = createInterface({ input: child.stdout! });
  const lines: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  rl.on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else lines.push(l);
  });
  const next = (ms: number) =>
    new Promise<string>((resolve) => {
      const l = lines.shift();
      if (l !== undefined) return resolve(l);
      const timer = setTimeout(() => resolve('timeout'), ms);
      waiters.push((x) => {
        clearTimeout(timer);
        resolve(x);
      });
    });
  const opened = await next(5_000);
  if (opened !== 'open') throw new Error(`long-lived connection from ${ns} to ${ip}:${port} did not open (${opened})`);
  return {
    async ping() {
      child.stdin!.write('\n');
      return (await next(5_000)) === 'pong';
    },
  };
}
