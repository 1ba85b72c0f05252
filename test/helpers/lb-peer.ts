/**
 * A tiny client/server for socket-LB tests, run as its own process (so it can
 * be put into a test cgroup and a test network namespace):
 *
 *   node lb-peer.js serve tcp|udp <ip> <port> <name>   prints "ready", answers every connection/datagram with <name>
 *   node lb-peer.js connect <ip> <port> <count>        TCP: [{ reply, peer } | { error }] as JSON
 *   node lb-peer.js udp <ip> <port> <count>            UDP sendto/recvfrom: [{ reply, from } | { error }]
 *
 * `peer` is what getpeername() says; `from` is the source recvfrom() reports.
 */
import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';

type Result = { reply: string; peer?: string; from?: string } | { error: string };

function tcpOnce(ip: string, port: number): Promise<Result> {
  return new Promise((resolve) => {
    const s = connect({ host: ip, port });
    let peer = '';
    let data = '';
    s.setTimeout(2000, () => s.destroy(new Error('ETIMEDOUT')));
    s.on('connect', () => (peer = `${s.remoteAddress ?? ''}:${s.remotePort ?? ''}`));
    s.on('data', (d) => (data += d.toString()));
    s.on('end', () => resolve({ reply: data, peer }));
    s.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
  });
}

function udpOnce(ip: string, port: number): Promise<Result> {
  return new Promise((resolve) => {
    const s = createSocket(ip.includes(':') ? 'udp6' : 'udp4');
    const t = setTimeout(() => {
      s.close();
      resolve({ error: 'ETIMEDOUT' });
    }, 2000);
    s.on('message', (m, rinfo) => {
      clearTimeout(t);
      s.close();
      resolve({ reply: m.toString(), from: `${rinfo.address}:${rinfo.port}` });
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      s.close();
      resolve({ error: e.code ?? e.message });
    });
    s.send('ping', port, ip);
  });
}

async function main(argv: string[]): Promise<void> {
  const [cmd, a, b, c, d] = argv;
  if (cmd === 'serve' && (a === 'tcp' || a === 'udp') && b && c && d) {
    if (a === 'tcp') {
      const srv = createServer((s) => s.end(d));
      srv.listen(Number(c), b, () => process.stdout.write('ready\n'));
    } else {
      const s = createSocket(b.includes(':') ? 'udp6' : 'udp4');
      s.on('message', (_m, rinfo) => s.send(d, rinfo.port, rinfo.address));
      s.bind(Number(c), b, () => process.stdout.write('ready\n'));
    }
    return;
  }
  if ((cmd === 'connect' || cmd === 'udp') && a && b) {
    const out: Result[] = [];
    for (let i = 0; i < Number(c ?? '1'); i++) out.push(await (cmd === 'connect' ? tcpOnce(a, Number(b)) : udpOnce(a, Number(b))));
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  process.stderr.write('usage: lb-peer serve tcp|udp <ip> <port> <name> | connect|udp <ip> <port> [count]\n');
  process.exit(2);
}

await main(process.argv.slice(2));
