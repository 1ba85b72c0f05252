/**
 * The addon's transparent sockets (native/transparent.ts) on their own: a
 * pod's datagram redirected by the kernel datapath (bpf_sk_assign) reaches an
 * addon UdpSocket with its original destination; sendFrom answers from that
 * foreign address and the pod accepts it; an upstream UdpSocket and a
 * tcpConnect socket carry SO_MARK, which the destination's datapath reads as
 * the client's identity; a transparent tcpListen fd served by Node's net sees
 * the original destination as its local address.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { test } from 'node:test';
import { native } from '../../native/index.js';
import { type Datagram, openUdpSocket, sendFrom } from '../../native/transparent.js';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import { proxyUpstreamMark } from '../../src/datapath/maps.js';
import type { EndpointPolicy, PolicyEntry } from '../../src/policy/types.js';
import { run } from '../../src/util/exec.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { connectFrom, startPeer } from '../helpers/datapath-peer.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const ID_A = 1001;
const ID_B = 1002;
const PROXY_PORT = 21000 + (process.pid % 9000);

function entry(remoteIdentity: number, protocol: 6 | 17, port: number, verdict: 'ALLOW' | 'REDIRECT'): PolicyEntry {
  return {
    remoteIdentity,
    protocol,
    port,
    endPort: port,
    verdict,
    derivedFrom: ['test/t'],
    ...(verdict === 'REDIRECT' ? { l7: { kind: 'dns' as const, rules: [{ matchPattern: '*' }] } } : {}),
  };
}

function pol(endpointId: string, identity: number, p: { ingress?: PolicyEntry[]; egress?: PolicyEntry[] }, revision: number): EndpointPolicy {
  return {
    endpointId,
    identity,
    ingress: { defaultDeny: p.ingress !== undefined, entries: p.ingress ?? [] },
    egress: { defaultDeny: p.egress !== undefined, entries: p.egress ?? [] },
    revision,
  };
}

function nextMessages(): { push: (m: Datagram[]) => void; wait: (ms?: number) => Promise<Datagram> } {
  const queue: Datagram[] = [];
  let waiter: (() => void) | undefined;
  return {
    push: (m) => {
      queue.push(...m);
      waiter?.();
    },
    wait: (ms = 3000) =>
      new Promise<Datagram>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no datagram')), ms);
        const check = () => {
          const m = queue.shift();
          if (!m) return;
          clearTimeout(timer);
          waiter = undefined;
          resolve(m);
        };
        waiter = check;
        check();
      }),
  };
}

test('addon transparent sockets: original destination, send from a foreign address, marks, transparent TCP listener', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('atu');
  t.after(() => sb.cleanup());
  const pins = tempPinDir('atu');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const k = 100 + (process.pid % 150);
  const ip = (n: number) => `10.${k}.78.${n}`;
  const table = 30000 + ((process.pid + 7) % 20000);
  const prio = 9000 + ((process.pid + 7) % 1000);

  const nsA = await sb.netns('a');
  const nsB = await sb.netns('b');
  const hA = sb.name('ha');
  const hB = sb.name('hb');
  await sb.vethToHost(nsA, { hostIf: hA, podIf: 'eth0', hostIp: `${ip(1)}/30`, podIp: `${ip(2)}/30`, defaultRoute: true });
  await sb.vethToHost(nsB, { hostIf: hB, podIf: 'eth0', hostIp: `${ip(5)}/30`, podIp: `${ip(6)}/30`, defaultRoute: true });
  for (const i of [hA, hB]) await run('sysctl', ['-qw', `net.ipv4.conf.${i}.forwarding=1`]);
  await run('ip', ['rule', 'add', 'fwmark', '0xb00/0xf00', 'lookup', String(table), 'priority', String(prio)]);
  sb.defer(() => run('ip', ['rule', 'del', 'fwmark', '0xb00/0xf00', 'lookup', String(table), 'priority', String(prio)]));
  await run('ip', ['route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(table)]);
  sb.defer(() => run('ip', ['route', 'flush', 'table', String(table)]));

  const dp = await EndpointManager.open({ pinDir: pins.path, proxyPort: () => PROXY_PORT });
  t.after(() => dp.close());
  await dp.addEndpoint({ endpointId: 'test/a', ifname: hA, identity: ID_A, ips: [ip(2)] });
  await dp.addEndpoint({ endpointId: 'test/b', ifname: hB, identity: ID_B, ips: [ip(6)] });
  dp.syncIpcache([
    { prefix: `${ip(2)}/32`, identity: ID_A },
    { prefix: `${ip(6)}/32`, identity: ID_B },
  ]);
  // A's UDP 5353 and TCP 5353 to B go to the proxy port; B admits only A (by address or by mark).
  dp.updatePolicy(pol('test/a', ID_A, { egress: [entry(ID_B, 17, 5353, 'REDIRECT'), entry(ID_B, 6, 5353, 'REDIRECT')] }, 1));
  dp.updatePolicy(pol('test/b', ID_B, { ingress: [entry(ID_A, 17, 5353, 'ALLOW'), entry(ID_A, 6, 5353, 'ALLOW')] }, 1));
  const userve = await startPeer(sb, nsB, ['userve', 'B', '5353']);
  const serve = await startPeer(sb, nsB, ['serve', 'B', '5353']);

  await t.test('a redirected datagram arrives with its original destination; the answer sent from it reaches the pod', async () => {
    const inbox = nextMessages();
    const s = openUdpSocket({ address: '0.0.0.0', port: PROXY_PORT, recvOrigDst: true }, inbox.push);
    t.after(() => s.close());
    assert.deepEqual(s.address(), { address: '0.0.0.0', port: PROXY_PORT });
    const client = connectFrom(sb, nsA, ip(6), 5353, { udp: true });
    const m = await inbox.wait();
    assert.equal(m.srcAddress, ip(2));
    assert.deepEqual([m.dstAddress, m.dstPort, m.truncated], [ip(6), 5353, false]);
    assert.ok(m.data.length > 0);
    sendFrom(Buffer.from('from-proxy'), { srcAddress: ip(6), srcPort: 5353, dstAddress: m.srcAddress, dstPort: m.srcPort });
    assert.equal(await client, 'from-proxy');
    assert.equal(userve.count(/./), 1, 'B saw nothing but its ready line');
    s.close();
    s.close();
  });

  await t.test("an upstream socket's mark carries the client's identity to the destination's datapath", async () => {
    const marked = nextMessages();
    const up = openUdpSocket({ address: '0.0.0.0', port: 0, mark: proxyUpstreamMark(ID_A) }, marked.push);
    t.after(() => up.close());
    up.send(Buffer.from('q'), ip(6), 5353);
    const r = await marked.wait();
    assert.equal(r.data.toString(), `B 5353 ${ip(5)}`, 'B admitted the node address because the mark says A');
    const plain = nextMessages();
    const noMark = openUdpSocket({ address: '0.0.0.0', port: 0 }, plain.push);
    t.after(() => noMark.close());
    noMark.send(Buffer.from('q'), ip(6), 5353);
    await assert.rejects(plain.wait(1000), 'without the mark the node is refused by B');
    up.close();
    noMark.close();
  });

  await t.test('a transparent TCP listener fd under net.Server sees the original destination; tcpConnect marks the upstream', async () => {
    const fd = native.tcpListen({ address: '0.0.0.0', port: PROXY_PORT, transparent: true });
    const seen: string[] = [];
    const server = net.createServer((c) => {
      seen.push(`${c.remoteAddress} ${c.localAddress}:${c.localPort}`);
      void native.tcpConnect({ address: c.localAddress ?? '', port: c.localPort ?? 0, mark: proxyUpstreamMark(ID_A) }).then((ufd) => {
        const upstream = new net.Socket({ fd: ufd, readable: true, writable: true });
        upstream.once('data', (d) => {
          c.write(`via ${d.toString()}`);
          c.pipe(upstream).pipe(c);
        });
        upstream.on('error', () => c.destroy());
      });
    });
    await new Promise<void>((resolve) => server.listen({ fd }, resolve));
    t.after(() => server.close());
    assert.equal(await connectFrom(sb, nsA, ip(6), 5353), `via B 5353 ${ip(5)}`);
    assert.deepEqual(seen, [`${ip(2)} ${ip(6)}:5353`]);
    await serve.waitFor(/^accept 5353 /);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  await t.test('bad arguments are TypeErrors before any syscall', () => {
    assert.throws(() => sendFrom(Buffer.from('x'), { srcAddress: 'nope', srcPort: 1, dstAddress: ip(2), dstPort: 1 }), TypeError);
    assert.throws(() => sendFrom(Buffer.from('x'), { srcAddress: '::1', srcPort: 1, dstAddress: ip(2), dstPort: 1 }), TypeError);
    assert.throws(() => openUdpSocket({ address: '1.2.3.4.5', port: 1 }, () => undefined), TypeError);
  });
});

test('addon UdpSocket: a receive buffer above net.core.rmem_max; datagrams the kernel dropped are counted', async () => {
  requirePrivileges();
  const big = openUdpSocket({ address: '127.0.0.1', port: 0, recvBuffer: 4 << 20 }, () => undefined);
  try {
    // The kernel counts twice the bytes asked for; SO_RCVBUFFORCE is not capped by rmem_max (208 KiB by default).
    assert.equal(big.receiveBuffer(), 8 << 20);
  } finally {
    big.close();
  }
  // A socket with the smallest buffer, flooded while the event loop cannot read it: what did not fit is counted.
  let received = 0;
  let drainedTo!: () => void;
  const drained = new Promise<void>((resolve) => (drainedTo = resolve));
  const small = openUdpSocket({ address: '127.0.0.1', port: 0, recvBuffer: 1 }, (msgs) => {
    received += msgs.length;
    setImmediate(() => drainedTo());
  });
  const sender = dgram.createSocket('udp4');
  try {
    const { port } = small.address();
    await new Promise<void>((resolve) => sender.bind(0, '127.0.0.1', resolve));
    const SENT = 200;
    const payload = Buffer.alloc(512);
    for (let i = 0; i < SENT; i++) sender.send(payload, port, '127.0.0.1');
    await drained;
    // Every datagram is either read or counted as dropped once the sender's queue has gone out (bounded wait under load).
    for (let waited = 0; received + small.drops() < SENT && waited < 5000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    assert.ok(small.drops() > 0, `the kernel dropped some of ${SENT} (received ${received})`);
    assert.equal(received + small.drops(), SENT);
  } finally {
    sender.close();
    small.close();
  }
});

test('addon UdpSocket in a worker thread: reads on that thread; a worker ended with it open closes it', async () => {
  const mod = new URL('../../native/transparent.js', import.meta.url).href;
  // The worker opens a socket, reports its port, echoes what it reads, and never closes it.
  const code = `
    const { parentPort } = require('node:worker_threads');
    import(${JSON.stringify(mod)}).then(({ openUdpSocket }) => {
      const s = openUdpSocket({ address: '127.0.0.1', port: 0 }, (msgs) => {
        for (const m of msgs) s.send(m.data, m.srcAddress, m.srcPort);
      });
      parentPort.postMessage(s.address().port);
    });`;
  const { Worker } = await import('node:worker_threads');
  for (let round = 0; round < 20; round++) {
    const w = new Worker(code, { eval: true });
    const port = await new Promise<number>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    const c = dgram.createSocket('udp4');
    let flood: NodeJS.Timeout | undefined;
    try {
      const echoed = new Promise<Buffer>((resolve) => c.once('message', resolve));
      c.send(Buffer.from(`ping ${round}`), port, '127.0.0.1');
      assert.equal((await echoed).toString(), `ping ${round}`);
      // Datagrams keep arriving while the worker is terminated: its loop still polls the socket
      // after it can no longer run JavaScript (this crashed the process before).
      flood = setInterval(() => {
        for (let i = 0; i < 20; i++) c.send(Buffer.from('flood'), port, '127.0.0.1');
      }, 1);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(await w.terminate(), 1);
    } finally {
      clearInterval(flood);
      c.close();
    }
    // The fd is closed with the worker: the same port binds again without SO_REUSEADDR.
    const again = openUdpSocket({ address: '127.0.0.1', port }, () => undefined);
    assert.equal(again.address().port, port);
    again.close();
  }
});
