/**
 * One L2 segment for L2-announcement tests and benchmarks: a bridge in its
 * own namespace (the underlay), node namespaces and a client namespace each
 * on it through a veth (`eth0` inside), addresses from a test subnet (and an IPv6 one when given), and in
 * each node namespace a TCP server on port 8080 that answers its node's
 * name — so a client connecting to an announced address learns which node
 * answered. Everything is made through a Sandbox and removed by its cleanup.
 *
 *   const seg = await l2Segment(sb, { nodes: ['node-a', 'node-b'], subnet: '10.77.0' });
 *   await seg.whoAnswers('10.77.0.200');      // 'node-a' | 'node-b' | undefined
 *   await seg.arpReplies('10.77.0.200');      // MACs that answered the client's ARP requests
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { z } from 'zod';
import { run } from '../../src/util/exec.js';
import type { Sandbox } from '../../src/devcluster/netns.js';

export interface L2Node {
  name: string;
  netns: string;
  ip: string;
  mac: string;
}

export interface L2Segment {
  nodes: L2Node[];
  client: { netns: string; ip: string };
  /** Which node's server a TCP connection from the client to `ip`:8080 reached (undefined: none within the timeout). */
  whoAnswers(ip: string, timeoutMs?: number): Promise<string | undefined>;
  /** MAC addresses that answered `count` ARP requests of the client for `ip`. */
  arpReplies(ip: string, count?: number): Promise<string[]>;
}

const LinkJson = z.array(z.object({ address: z.string() }).loose());

async function macOf(netns: string, ifname: string): Promise<string> {
  const links = LinkJson.parse(JSON.parse((await run('ip', ['-n', netns, '-j', 'link', 'show', ifname])).stdout));
  return links[0]?.address ?? '';
}

const SERVER = "require('net').createServer((s) => s.end(process.argv[1])).listen(8080, '::', () => process.stdout.write('ready\\n'))";
const CLIENT =
  "const s = require('net').connect({ host: process.argv[1], port: 8080 }); let d = ''; s.on('data', (c) => (d += c)); s.on('end', () => { process.stdout.write(d); process.exit(0); }); s.on('error', () => process.exit(2)); setTimeout(() => process.exit(3), Number(process.argv[2]));";

export async function l2Segment(sb: Sandbox, o: { nodes: readonly string[]; subnet: string; subnet6?: string }): Promise<L2Segment> {
  const br = await sb.netns('br');
  await run('ip', ['-n', br, 'link', 'add', 'br0', 'type', 'bridge']);
  await run('ip', ['-n', br, 'link', 'set', 'br0', 'up']);
  const attach = async (suffix: string, ip: string, ip6: string | undefined): Promise<string> => {
    const ns = await sb.netns(suffix);
    const outer = sb.name(`${suffix}o`);
    const inner = sb.name(`${suffix}i`);
    await run('ip', ['link', 'add', outer, 'type', 'veth', 'peer', 'name', inner]);
    // Deleting either namespace removes the pair; this covers a failure before both moved.
    sb.defer(() => run('ip', ['link', 'del', outer]).catch(() => undefined));
    await run('ip', ['link', 'set', outer, 'netns', br]);
    await run('ip', ['link', 'set', inner, 'netns', ns]);
    await run('ip', ['-n', br, 'link', 'set', outer, 'master', 'br0', 'up']);
    await run('ip', ['-n', ns, 'link', 'set', inner, 'name', 'eth0']);
    await run('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    if (ip6) await run('ip', ['-n', ns, 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad']);
    await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    return ns;
  };
  const nodes: L2Node[] = [];
  const servers: ChildProcess[] = [];
  sb.defer(async () => {
    for (const p of servers) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      p.kill('SIGKILL');
      await once(p, 'exit');
    }
  });
  for (const [i, name] of o.nodes.entries()) {
    const ip = `${o.subnet}.${i + 1}`;
    const netns = await attach(`n${i}`, ip, o.subnet6 ? `${o.subnet6}${i + 1}` : undefined);
    nodes.push({ name, netns, ip, mac: await macOf(netns, 'eth0') });
    const p = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', SERVER, name], { stdio: ['ignore', 'pipe', 'inherit'] });
    servers.push(p);
    await new Promise<void>((resolve, reject) => {
      p.stdout?.once('data', () => resolve());
      p.once('exit', (code) => reject(new Error(`the server of ${name} exited (${code})`)));
    });
  }
  const client = { netns: await attach('cl', `${o.subnet}.100`, o.subnet6 ? `${o.subnet6}100` : undefined), ip: `${o.subnet}.100` };
  return {
    nodes,
    client,
    async whoAnswers(ip, timeoutMs = 1_000) {
      try {
        const r = await run('ip', ['netns', 'exec', client.netns, process.execPath, '-e', CLIENT, ip, String(timeoutMs)], { timeoutMs: timeoutMs + 5_000 });
        return r.stdout === '' ? undefined : r.stdout;
      } catch {
        return undefined;
      }
    },
    async arpReplies(ip, count = 3) {
      // arping exits 1 when nothing answered: that is an answer too (no MACs).
      const r = await run('ip', ['netns', 'exec', client.netns, 'arping', '-c', String(count), '-w', String(count + 1), '-I', 'eth0', ip]).catch((e: unknown) => ({ stdout: e instanceof Error ? e.message : '' }));
      return [...new Set([...r.stdout.matchAll(/reply from \S+ \[([0-9a-fA-F:]{17})\]/g)].map((m) => (m[1] ?? '').toLowerCase()))].sort();
    },
  };
}
