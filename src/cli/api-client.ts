/**
 * The CLI side of the agent's local API: requests over the unix socket and
 * output as a table (default) or JSON (`-o json`).
 */
import { Client } from 'undici';

export const DEFAULT_API_SOCKET = '/var/run/meshd/meshd.sock';

export class AgentUnreachableError extends Error {
  readonly code = 'MESHD_AGENT_UNREACHABLE';
}

export function apiSocket(argv: readonly string[]): string {
  const i = argv.indexOf('--api-socket');
  if (i >= 0 && argv[i + 1]) return argv[i + 1] as string;
  return process.env.MESHD_API_SOCKET ?? DEFAULT_API_SOCKET;
}

export function apiGet(socketPath: string, path: string): Promise<unknown> {
  return apiRequest(socketPath, 'GET', path);
}

export function apiPost(socketPath: string, path: string, body: unknown): Promise<unknown> {
  return apiRequest(socketPath, 'POST', path, body);
}

async function apiRequest(socketPath: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
  const client = new Client('http://meshd', { socketPath });
  try {
    const req = { method, path, headersTimeout: 30_000, bodyTimeout: 30_000, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) };
    const res = await client.request(req).catch((e: unknown) => {
      throw new AgentUnreachableError(`cannot reach the meshd agent at ${socketPath} (${e instanceof Error ? e.message : String(e)}); is "meshd agent" running?`);
    });
    const answer: unknown = await res.body.json();
    if (res.statusCode !== 200) {
      const err = typeof answer === 'object' && answer !== null && 'error' in answer ? (answer.error as { message?: string }) : {};
      throw new Error(`agent answered ${res.statusCode}: ${err.message ?? JSON.stringify(answer)}`);
    }
    return answer;
  } finally {
    await client.close();
  }
}

export function outputJson(argv: readonly string[]): boolean {
  const i = argv.indexOf('-o');
  return (i >= 0 && argv[i + 1] === 'json') || argv.includes('--output=json') || argv.includes('-ojson');
}

/** A plain aligned table; cells are stringified. */
export function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<unknown>>): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : typeof c === 'object' ? JSON.stringify(c) : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(headers), ...cells.map(line)].join('\n');
}
