/**
 * hey (the Debian package) as a second, independent load generator for the
 * chaos tests: `hey -z <long> -c N [-disable-keepalive] URL` inside a pod's
 * namespace until stop() interrupts it (SIGINT: hey then prints its report),
 * and the report's status codes and errors.
 *
 *   const h = await startHey(sb, ns, 'http://10.1.2.6:8080/api/v1/users', { keepAlive: false });
 *   const r = await h.stop();   // { statuses: { '200': 1234 }, errors: 0, errorLines: [] }
 */
import { spawn } from 'node:child_process';
import type { Sandbox } from '../../src/devcluster/netns.js';

export interface HeyReport {
  statuses: Record<string, number>;
  errors: number;
  errorLines: string[];
}

/** The status code and error distributions of hey's summary. */
export function parseHeyReport(out: string): HeyReport {
  const statuses: Record<string, number> = {};
  const errorLines: string[] = [];
  let errors = 0;
  let section: 'status' | 'error' | null = null;
  for (const line of out.split('\n')) {
    if (line.startsWith('Status code distribution:')) section = 'status';
    else if (line.startsWith('Error distribution:')) section = 'error';
    else if (/^\S/.test(line)) section = null;
    const m = /^\s+\[(\d+)\]\s+(\d+) responses/.exec(line);
    if (section === 'status' && m?.[1] && m[2]) statuses[m[1]] = Number(m[2]);
    const e = /^\s+\[(\d+)\]\s+(.*)$/.exec(line);
    if (section === 'error' && e?.[1]) {
      errors += Number(e[1]);
      errorLines.push(line.trim());
    }
  }
  return { statuses, errors, errorLines };
}

export async function startHey(sb: Sandbox, ns: string, url: string, o: { keepAlive: boolean; concurrency?: number }): Promise<{ stop(): Promise<HeyReport> }> {
  const args = ['netns', 'exec', ns, 'hey', '-z', '3600s', '-c', String(o.concurrency ?? 2), '-t', '10', ...(o.keepAlive ? [] : ['-disable-keepalive']), url];
  const child = spawn('ip', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  sb.defer(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  return {
    async stop() {
      child.kill('SIGINT');
      await exited;
      if (!out.includes('Status code distribution:')) throw new Error(`hey printed no report: ${out.slice(-500)}`);
      return parseHeyReport(out);
    },
  };
}
