/**
 * An open-loop DNS load generator (dnsperf's model: queries go out at a fixed
 * rate whether or not answers came back), run inside a pod's namespace by
 * bench/dns.ts:
 *
 *   node dns-load.js SERVER NAME QPS SECONDS   → one JSON line:
 *   {"sent":…, "answered":…, "lost":…, "qps":…, "p50_ms":…, "p99_ms":…}
 *
 * One UDP socket; each query has its own id, its send time is kept, and an
 * answer's latency is the time from that send to its arrival. Queries not
 * answered within 1 s after the last send are lost.
 */
import dgram from 'node:dgram';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as dnsPacket from 'dns-packet';

const [server = '', name = '', qpsArg = '1000', secondsArg = '3'] = process.argv.slice(2);
const qps = Number(qpsArg);
const seconds = Number(secondsArg);
if (!server || !name || !(qps > 0) || !(seconds > 0)) {
  process.stderr.write('usage: dns-load SERVER NAME QPS SECONDS\n');
  process.exit(2);
}

// A receive buffer as large as net.core.rmem_max allows: answers that arrive while this loop sends a burst wait, not drop.
const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
const sentAt = new Map<number, bigint>();
const latencies: number[] = [];
let sent = 0;
let nextId = 0;
sock.on('message', (m) => {
  if (m.length < 2) return;
  const t0 = sentAt.get(m.readUInt16BE(0));
  if (t0 === undefined) return;
  sentAt.delete(m.readUInt16BE(0));
  latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
});

const template = dnsPacket.encode({ type: 'query', id: 0, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
const total = Math.round(qps * seconds);
// The generator's own event-loop delay: a latency it adds to every path alike (reported, not subtracted).
const loop = monitorEventLoopDelay({ resolution: 1 });
loop.enable();
const start = process.hrtime.bigint();
await new Promise<void>((resolve) => {
  const tick = () => {
    const due = Math.min(total, Math.floor((Number(process.hrtime.bigint() - start) / 1e9) * qps));
    while (sent < due) {
      const id = nextId;
      nextId = (nextId + 1) & 0xffff;
      const q = Buffer.from(template);
      q.writeUInt16BE(id, 0);
      sentAt.set(id, process.hrtime.bigint());
      sock.send(q, 53, server);
      sent++;
    }
    // A 1 ms timer rather than a busy loop: the generator must not take the CPU the paths under test need.
    if (sent >= total) resolve();
    else setTimeout(tick, 1);
  };
  tick();
});
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
loop.disable();
await new Promise((r) => setTimeout(r, 1000));
sock.close();
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? Number.NaN;
process.stdout.write(
  `${JSON.stringify({ sent, answered: latencies.length, lost: sent - latencies.length, qps: Math.round(latencies.length / elapsed), p50_ms: Number(pct(50).toFixed(3)), p99_ms: Number(pct(99).toFixed(3)), loop_p99_ms: Number((loop.percentile(99) / 1e6).toFixed(3)) })}\n`,
);
