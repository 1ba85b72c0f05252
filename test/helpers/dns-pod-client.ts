/**
 * A DNS and TCP client that runs inside a pod's network namespace for the
 * DNS proxy tests (`ip netns exec NS node dns-pod-client.js`). It reads one
 * JSON command per line on stdin and writes one JSON result per line:
 *
 *   {"op":"query","server":"10.0.0.10","name":"api.example.com","proto":"udp"}
 *       → {"rcode":"NOERROR","answers":[{"name":…,"type":"A","data":"198.18.0.1","ttl":5}]} | {"error":"timeout"}
 *   {"op":"resolveConnect","server":…,"name":…,"port":443}
 *       → the query's result plus {"ip":…,"connect":"<greeting>"|"timeout"|"refused"}, the connection
 *         opened the moment the answer arrived
 *   {"op":"connect","ip":…,"port":443} → {"connect":…}
 *   {"op":"raw","server":…,"data":"<base64>","proto":"udp"|"tcp"} → sends the bytes as they are, {"sent":true}
 *
 * Prints "ready" first.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { createInterface } from 'node:readline';
import * as dnsPacket from 'dns-packet';

interface Cmd {
  op: 'query' | 'resolveConnect' | 'connect' | 'raw';
  server?: string;
  name?: string;
  type?: 'A' | 'AAAA';
  proto?: 'udp' | 'tcp';
  ip?: string;
  port?: number;
  data?: string;
  timeoutMs?: number;
}

const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

function udpExchange(server: string, msg: Buffer, timeoutMs: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(server) ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(null);
    }, timeoutMs);
    s.on('message', (d) => {
      clearTimeout(timer);
      s.close();
      resolve(d);
    });
    s.on('error', () => {
      clearTimeout(timer);
      s.close();
      resolve(null);
    });
    s.send(msg, 53, server);
  });
}

function tcpExchange(server: string, msg: Buffer, timeoutMs: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const c = net.connect(53, server);
    let buf = Buffer.alloc(0);
    const done = (r: Buffer | null) => {
      clearTimeout(timer);
      c.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    c.on('connect', () => {
      const f = Buffer.alloc(2 + msg.length);
      f.writeUInt16BE(msg.length, 0);
      msg.copy(f, 2);
      c.write(f);
    });
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
    c.on('error', () => done(null));
    c.on('close', () => done(null));
  });
}

async function query(c: Cmd): Promise<Record<string, unknown>> {
  const id = Math.floor(Math.random() * 65536);
  const msg = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: c.type ?? 'A', name: c.name ?? '' }] });
  const timeoutMs = c.timeoutMs ?? 2000;
  const r = c.proto === 'tcp' ? await tcpExchange(c.server ?? '', msg, timeoutMs) : await udpExchange(c.server ?? '', msg, timeoutMs);
  if (!r) return { error: 'timeout' };
  const p = dnsPacket.decode(r);
  if (p.id !== id) return { error: 'wrong id' };
  return {
    rcode: RCODES[r.readUInt16BE(2) & 0xf] ?? String(r.readUInt16BE(2) & 0xf),
    answers: (p.answers ?? []).map((a) => ({ name: a.name, type: a.type, data: 'data' in a ? a.data : null, ttl: 'ttl' in a ? a.ttl : null })),
  };
}

function connect(ip: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect({ host: ip, port });
    const timer = setTimeout(() => {
      c.destroy();
      resolve('timeout');
    }, timeoutMs);
    let line = '';
    c.on('data', (d: Buffer) => {
      line += d.toString();
      if (line.includes('\n')) {
        clearTimeout(timer);
        c.destroy();
        resolve(line.split('\n')[0] ?? '');
      }
    });
    c.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code === 'ECONNREFUSED' ? 'refused' : `error ${e.code ?? ''}`);
    });
  });
}

async function handle(c: Cmd): Promise<Record<string, unknown>> {
  switch (c.op) {
    case 'query':
      return query(c);
    case 'resolveConnect': {
      const q = await query(c);
      const answers = Array.isArray(q.answers) ? (q.answers as Array<{ type: string; data: unknown }>) : [];
      const a = answers.find((x) => x.type === 'A');
      if (!a || typeof a.data !== 'string') return { ...q, connect: 'no address' };
      return { ...q, ip: a.data, connect: await connect(a.data, c.port ?? 0, c.timeoutMs ?? 2000) };
    }
    case 'connect':
      return { connect: await connect(c.ip ?? '', c.port ?? 0, c.timeoutMs ?? 2000) };
    case 'raw': {
      const data = Buffer.from(c.data ?? '', 'base64');
      if (c.proto === 'tcp') {
        await new Promise<void>((resolve) => {
          const s = net.connect(53, c.server ?? '', () => s.end(data));
          s.on('close', () => resolve());
          s.on('error', () => resolve());
          setTimeout(() => {
            s.destroy();
            resolve();
          }, 500);
        });
      } else {
        await new Promise<void>((resolve) => {
          const s = dgram.createSocket(net.isIPv6(c.server ?? '') ? 'udp6' : 'udp4');
          s.send(data, 53, c.server ?? '', () => {
            s.close();
            resolve();
          });
        });
      }
      return { sent: true };
    }
  }
}

process.stdout.write('ready\n');
const rl = createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on('line', (line) => {
  chain = chain.then(async () => {
    let out: Record<string, unknown>;
    try {
      out = await handle(JSON.parse(line) as Cmd);
    } catch (e) {
      out = { error: e instanceof Error ? e.message : String(e) };
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
  });
});
