/**
 * A full flow-event ring buffer loses the event, never the packet, and the
 * loss is counted (meshd_metrics, MESHD_METRIC_EVENTS_LOST): a burst of
 * drops run in the kernel (BPF_PROG_TEST_RUN with repeat) while nothing
 * reads the ring buffer overflows it; every drop is still counted, and the
 * events a reader then gets plus the counted losses are the whole burst.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { native } from '../../native/index.js';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import { buildFrame, TcAct } from '../../src/datapath/packet.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('a burst that overflows the ring buffer: every drop counted, the lost events counted, received + lost = the burst', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('evlost');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const dp = await EndpointManager.open({ pinDir: pins.path, proxyPort: () => 15001 });
  t.after(() => dp.close());
  await dp.addEndpoint({ endpointId: 't/pod', ifname: 'lo', identity: 500, attach: false });
  dp.syncIpcache([
    { prefix: '10.9.0.2/32', identity: 500 },
    { prefix: '10.9.0.3/32', identity: 600 },
  ]);
  // Default deny on egress, nothing allowed: every packet is a drop with an event.
  dp.updatePolicy({ endpointId: 't/pod', identity: 500, ingress: { defaultDeny: false, entries: [] }, egress: { defaultDeny: true, entries: [] }, revision: 1 });
  assert.equal(dp.metrics().eventsLost, 0n);
  // The ring buffer (1 MiB) holds about 13,000 events; nothing reads it during the burst.
  const burst = 40_000;
  const frame = buildFrame({ src: '10.9.0.2', dst: '10.9.0.3', proto: 6, sport: 40000, dport: 80, tcpFlags: 0x02 });
  assert.equal(native.progTestRun(dp.programFds().fromPod, frame, { repeat: burst }).retval, TcAct.SHOT);
  const m = dp.metrics();
  const drops = m.drops.reduce((n, d) => n + d.packets, 0n);
  assert.equal(drops, BigInt(burst), 'every packet dropped and counted, event or not');
  assert.ok(m.eventsLost > 0n && m.eventsLost < BigInt(burst), `some events lost, not all: ${m.eventsLost}`);
  let received = 0;
  const sub = dp.onFlowEvents((rs) => (received += rs.filter((r) => r.type === 'drop').length));
  t.after(() => sub.close());
  const deadline = Date.now() + 5000;
  while (BigInt(received) + m.eventsLost < BigInt(burst) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(BigInt(received) + m.eventsLost, BigInt(burst));
});
