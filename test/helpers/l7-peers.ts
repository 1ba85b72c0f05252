/**
 * Drives test/helpers/l7-http-peer.ts inside namespaces: an HTTP server
 * (HTTP/1.1 + HTTP/2 prior knowledge + gRPC-shaped answers) and a client that
 * sends each request on a new connection. Both are killed by the sandbox's
 * cleanup.
 *
 *   const srv = await startHttpServer(sb, nsB, 'B', [8080, 9090]);
 *   const cli = await startHttpClient(sb, nsA);
 *   await cli.request({ url: 'http://10.0.0.6:8080/api/v1/users' });   // { status: 200, body: 'B 8080 GET …' }
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { z } from 'zod';
import { repoPath } from '../../src/util/paths.js';
import type { Sandbox } from './netns.js';

const PEER_JS = repoPath('dist', 'test', 'helpers', 'l7-http-peer.js');

const answerSchema = z.object({ id: z.number(), status: z.number().optional(), body: z.string().optional(), grpcStatus: z.string().optional(), error: z.string().optional() });

export interface HttpAnswer {
  status?: number;
  body?: string;
  grpcStatus?: string;
  error?: string;
}

export interface HttpRequestSpec {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  h2?: boolean;
  grpc?: boolean;
  timeoutMs?: number;
}

function spawnIn(sb: Sandbox, ns: string, args: string[]): { proc: ChildProcessWithoutNullStreams; lines: string[]; onLine: Set<(l: string) => void>; stderr: () => string } {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, PEER_JS, ...args]);
  const lines: string[] = [];
  const onLine = new Set<(l: string) => void>();
  let buf = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    for (const p of parts) {
      lines.push(p);
      for (const f of onLine) f(p);
    }
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  sb.defer(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  });
  return { proc, lines, onLine, stderr: () => err };
}

async function ready(p: ReturnType<typeof spawnIn>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!p.lines.includes('ready')) {
    if (Date.now() > deadline || p.proc.exitCode !== null) throw new Error(`${what} did not start: ${p.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface HttpServerPeer {
  /** "req PORT METHOD PATH REMOTE" lines so far. */
  requests(): string[];
}

export async function startHttpServer(sb: Sandbox, ns: string, name: string, ports: number[]): Promise<HttpServerPeer> {
  const p = spawnIn(sb, ns, ['serve', name, ...ports.map(String)]);
  await ready(p, `http server in ${ns}`);
  return { requests: () => p.lines.filter((l) => l.startsWith('req ')) };
}

export interface HttpClientPeer {
  request(r: HttpRequestSpec): Promise<HttpAnswer>;
}

export async function startHttpClient(sb: Sandbox, ns: string): Promise<HttpClientPeer> {
  const p = spawnIn(sb, ns, ['client']);
  await ready(p, `http client in ${ns}`);
  let seq = 0;
  return {
    request(r) {
      const id = ++seq;
      return new Promise<HttpAnswer>((resolve) => {
        const f = (line: string) => {
          if (!line.startsWith('{')) return;
          const parsed = answerSchema.safeParse(JSON.parse(line));
          if (!parsed.success || parsed.data.id !== id) return;
          p.onLine.delete(f);
          const { id: _id, ...rest } = parsed.data;
          resolve(rest);
        };
        p.onLine.add(f);
        p.proc.stdin.write(`${JSON.stringify({ id, ...r })}\n`);
      });
    },
  };
}
