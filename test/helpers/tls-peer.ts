/**
 * TLS peers for the SNI and TLS interception tests, run inside a namespace as
 * `node dist/test/helpers/tls-peer.js …`, and the test-side helpers that
 * start them and make test certificates with the machine's openssl.
 *
 *   serve CERT KEY PORT…   a TLS server answering each connection with
 *                          "tls SNI from ADDR" (raw TLS) or, for an HTTP request
 *                          inside TLS, "https METHOD PATH SNI from ADDR"; prints
 *                          "ready", then "conn PORT SNI ADDR" per connection.
 *   connect HOST PORT [SNI] [CA]  one TLS connection (SNI omitted: no SNI; with CA
 *                          the server's certificate is verified against it);
 *                          prints one JSON line: {ok, data, peerCN} or {ok: false, code}.
 *   get HOST PORT SNI PATH [CA]   one HTTPS GET: {ok, status, body, peerCN} or {ok: false, code}.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as createTls, type TLSSocket } from 'node:tls';
import { z } from 'zod';

const outcomeSchema = z.object({
  ok: z.boolean(),
  data: z.string().optional(),
  status: z.number().optional(),
  body: z.string().optional(),
  peerCN: z.string().optional(),
  code: z.string().optional(),
});
export type TlsOutcome = z.infer<typeof outcomeSchema>;

const cnOf = (s: TLSSocket): string => {
  const c = s.getPeerCertificate() as { subject?: { CN?: unknown } } | null;
  return typeof c?.subject?.CN === 'string' ? c.subject.CN : '';
};

function serve(cert: string, key: string, ports: number[]): void {
  for (const port of ports) {
    // No session tickets: every handshake is a full one, so the SNI is always seen (Node leaves servername unset on resumption).
    const srv = createTls({ cert: readFileSync(cert), key: readFileSync(key), secureOptions: constants.SSL_OP_NO_TICKET }, (s) => {
      const sni = s.servername || '-';
      const addr = s.remoteAddress ?? '';
      process.stdout.write(`conn ${port} ${sni} ${addr}\n`);
      s.once('data', (d: Buffer) => {
        const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]\r\n/.exec(d.toString('latin1'));
        if (m) {
          const body = `https ${m[1]} ${m[2]} ${sni} from ${addr}`;
          s.end(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
        } else s.end(`tls ${sni} from ${addr}\n`);
      });
      s.on('error', () => undefined);
    });
    srv.on('tlsClientError', () => undefined);
    srv.listen(port, '0.0.0.0', () => process.stdout.write('ready\n'));
  }
}

let printed = false;
function print(o: TlsOutcome): void {
  if (printed) return;
  printed = true;
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

function connect(host: string, port: number, sni: string | undefined, ca: string | undefined): void {
  const s = tlsConnect({
    host,
    port,
    ...(sni ? { servername: sni } : {}),
    ...(ca ? { ca: readFileSync(ca), checkServerIdentity: () => undefined } : { rejectUnauthorized: false }),
    timeout: 4000,
  });
  let data = '';
  let secured = false;
  s.on('secureConnect', () => {
    secured = true;
    s.write('hello\n');
  });
  s.on('data', (d: Buffer) => (data += d.toString()));
  s.on('end', () => print(secured ? { ok: data.length > 0, data: data.trim(), peerCN: cnOf(s) } : { ok: false, code: 'CLOSED_BEFORE_HANDSHAKE' }));
  s.on('timeout', () => {
    print({ ok: false, code: 'TIMEOUT' });
    s.destroy();
  });
  s.on('error', (e: NodeJS.ErrnoException) => print({ ok: false, code: e.code ?? e.message }));
}

function get(host: string, port: number, sni: string, path: string, ca: string | undefined): void {
  const req = httpsRequest({
    host,
    port,
    path,
    servername: sni,
    headers: { host: sni },
    agent: false,
    timeout: 4000,
    ...(ca ? { ca: readFileSync(ca), checkServerIdentity: () => undefined } : { rejectUnauthorized: false }),
  });
  req.on('response', (res) => {
    let body = '';
    const peerCN = res.socket && 'getPeerCertificate' in res.socket ? cnOf(res.socket as TLSSocket) : '';
    res.on('data', (d: Buffer) => (body += d.toString()));
    res.on('end', () => print({ ok: true, status: res.statusCode ?? 0, body, peerCN }));
  });
  req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
  req.on('error', (e: NodeJS.ErrnoException) => print({ ok: false, code: e.code ?? e.message }));
  req.end();
}

// ---- test side ----

/** Runs one `connect` / `get` in a namespace and returns its outcome. */
export async function tlsPeer(ns: string, args: string[]): Promise<TlsOutcome> {
  const script = new URL(import.meta.url).pathname;
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, script, ...args]);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  await new Promise<void>((r) => proc.once('exit', () => r()));
  const line = out.trim().split('\n')[0] ?? '';
  try {
    return outcomeSchema.parse(JSON.parse(line));
  } catch {
    throw new Error(`tls peer ${args.join(' ')}: no outcome (stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err)})`);
  }
}

/** Starts `serve` in a namespace; resolves once listening; returns the connection lines so far. */
export async function startTlsServer(ns: string, cert: string, key: string, ports: number[], defer: (fn: () => Promise<unknown>) => void): Promise<{ conns(): string[] }> {
  const script = new URL(import.meta.url).pathname;
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, script, 'serve', cert, key, ...ports.map(String)]);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  defer(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  });
  const end = Date.now() + 10_000;
  while (out.split('\n').filter((l) => l === 'ready').length < ports.length) {
    if (Date.now() > end || proc.exitCode !== null) throw new Error(`tls server did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { conns: () => out.split('\n').filter((l) => l.startsWith('conn ')) };
}

export interface TestPki {
  dir: string;
  ca: { crt: string; key: string };
  /** A leaf certificate signed by the CA: `${dir}/NAME.crt`, `${dir}/NAME.key`. */
  leaf(name: string, cn: string, dnsNames: string[]): Promise<{ crt: string; key: string }>;
  remove(): void;
}

function openssl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.once('exit', (c) => (c === 0 ? resolve() : reject(new Error(`openssl ${args[0] ?? ''}: ${err}`))));
  });
}

/** A throwaway CA (EC P-256) made with the machine's openssl in a temporary directory. */
export async function makePki(tag: string): Promise<TestPki> {
  const dir = mkdtempSync(join(tmpdir(), `meshd-${tag}-pki-`));
  const p = (n: string) => join(dir, n);
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${tag} test CA`, '-keyout', p('ca.key'), '-out', p('ca.crt')]);
  const leaf = async (name: string, cn: string, dnsNames: string[]) => {
    await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${cn}`, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`)]);
    writeFileSync(p(`${name}.ext`), `subjectAltName=${dnsNames.map((d) => `DNS:${d}`).join(',')}\n`);
    await openssl(['x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', p(`${name}.ext`), '-out', p(`${name}.crt`)]);
    return { crt: p(`${name}.crt`), key: p(`${name}.key`) };
  };
  return { dir, ca: { crt: p('ca.crt'), key: p('ca.key') }, leaf, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

const isMain = process.argv[1] !== undefined && new URL(import.meta.url).pathname === process.argv[1];
if (isMain) {
  const [cmd, ...a] = process.argv.slice(2);
  if (cmd === 'serve') serve(a[0] ?? '', a[1] ?? '', a.slice(2).map(Number));
  else if (cmd === 'connect') connect(a[0] ?? '', Number(a[1]), a[2] || undefined, a[3] || undefined);
  else if (cmd === 'get') get(a[0] ?? '', Number(a[1]), a[2] ?? '', a[3] ?? '/', a[4] || undefined);
  else {
    process.stderr.write(`unknown command ${String(cmd)}\n`);
    process.exit(2);
  }
}
