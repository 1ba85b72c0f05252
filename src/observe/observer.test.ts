import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import { compileFilters } from './filters.js';
import { timestampFromNs, type Flow } from './flow.js';
import { FlowObserver, type FlowsResponse, type FlowsSink } from './observer.js';
import { FlowRing, isValidCapacity } from './ring.js';

let n = 0;
function flow(over: Partial<Flow> = {}): Flow {
  n += 1;
  return {
    time: timestampFromNs(BigInt(Date.now()) * 1_000_000n + BigInt(n)),
    uuid: `u${n}`,
    verdict: 'FORWARDED',
    IP: { source: '10.0.0.1', destination: '10.0.0.2', ipVersion: 'IPv4' },
    l4: { protocol: 'TCP', TCP: { source_port: 40000, destination_port: 80 } },
    source: { identity: 300, labels: ['k8s:app=client', 'k8s:io.kubernetes.pod.namespace=default'], namespace: 'default', pod_name: 'client-1' },
    destination: { identity: 301, labels: ['k8s:app=web', 'k8s:io.kubernetes.pod.namespace=prod'], namespace: 'prod', pod_name: 'web-7' },
    Type: 'L3_L4',
    node_name: 'node-1',
    event_type: { type: 5, sub_type: 0 },
    traffic_direction: 'EGRESS',
    ...over,
  };
}

function collect(): FlowsSink & { got: FlowsResponse[]; ended: boolean } {
  const s = {
    got: [] as FlowsResponse[],
    ended: false,
    write(r: FlowsResponse) {
      s.got.push(r);
      return true;
    },
    drained: () => Promise.resolve(),
    end() {
      s.ended = true;
    },
  };
  return s;
}

test('capacity must be a power of two minus one, as Cilium requires', () => {
  assert.equal(isValidCapacity(4095), true);
  assert.equal(isValidCapacity(1), true);
  assert.equal(isValidCapacity(4096), false);
  assert.equal(isValidCapacity(0), false);
  assert.throws(() => new FlowRing(1000), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_RING_CAPACITY'));
});

test('the ring keeps the last capacity items and tells a lapped reader how many it lost', () => {
  const r = new FlowRing<number>(3);
  for (let i = 0; i < 5; i += 1) r.write(i);
  assert.equal(r.size, 3);
  assert.equal(r.overwritten, 2);
  assert.deepEqual(r.read(0), { lost: 2, next: 2 });
  assert.deepEqual(r.read(2), { item: 2 });
  assert.equal(r.read(5), undefined);
});

test('filters: whitelist entries are ORed, fields inside one are ANDed, the blacklist excludes', () => {
  const drop = flow({ verdict: 'DROPPED', drop_reason_desc: 'POLICY_DENY' });
  const fwd = flow();
  const keep = compileFilters([{ verdict: ['DROPPED'], destination_pod: ['prod/web'] }, { source_label: ['k8s:app=nothing'] }]);
  assert.equal(keep(drop), true);
  assert.equal(keep(fwd), false);
  assert.equal(compileFilters([{ destination_label: ['app=web,!tier'] }])(fwd), true);
  assert.equal(compileFilters([{ destination_label: ['k8s:app!=web'] }])(fwd), false);
  assert.equal(compileFilters([{ source_pod: ['prod/'] }])(fwd), false);
  assert.equal(compileFilters([{ source_ip: ['10.0.0.0/24'] }], [{ destination_port: ['80'] }])(fwd), false);
  assert.equal(compileFilters([{ protocol: ['tcp'], source_identity: [300] }])(fwd), true);
});

test('filters: http status, method and path; a field meshd cannot evaluate is refused', () => {
  const resp = flow({ Type: 'L7', l7: { type: 'RESPONSE', record: 'http', http: { code: 403, method: 'GET', url: 'http://web/admin/x', protocol: 'HTTP/1.1' } } });
  assert.equal(compileFilters([{ http_status_code: ['4+'], http_method: ['get'], http_path: ['^/admin'] }])(resp), true);
  assert.equal(compileFilters([{ http_status_code: ['200'] }])(resp), false);
  assert.equal(compileFilters([{ protocol: ['http'] }])(resp), true);
  assert.throws(() => compileFilters([{ http_status_code: ['abc'] }]), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_FILTER_INVALID'));
  assert.throws(() => compileFilters([{ source_fqdn: ['*.example.com'] }]), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_FILTER_INVALID'));
  assert.throws(() => compileFilters([{ protocol: ['carrier-pigeon'] }]), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_FILTER_INVALID'));
});

test('GetFlows: last N, first N, since/until', async () => {
  const obs = new FlowObserver({ capacity: 15, nodeName: 'node-1', version: 'test' });
  const flows = Array.from({ length: 10 }, () => flow());
  obs.add(flows);
  const last = collect();
  await obs.getFlows({ number: 3 }, last).done;
  assert.deepEqual(last.got.map((r) => (r.response_types === 'flow' ? r.flow.uuid : '')), flows.slice(7).map((f) => f.uuid));
  assert.equal(last.ended, true);
  const first = collect();
  await obs.getFlows({ number: 2, first: true }, first).done;
  assert.deepEqual(first.got.map((r) => (r.response_types === 'flow' ? r.flow.uuid : '')), flows.slice(0, 2).map((f) => f.uuid));
  const win = collect();
  const t = (i: number) => BigInt((flows[i]?.time.seconds ?? '0')) * 1_000_000_000n + BigInt(flows[i]?.time.nanos ?? 0);
  await obs.getFlows({ sinceNs: t(4), untilNs: t(5) }, win).done;
  assert.equal(win.got.length, 2);
  assert.equal(obs.status().num_flows, '10');
  assert.equal(obs.status().max_flows, '15');
});

test('GetFlows follow: new flows arrive; a follower that stalls is lapped and told what it lost', async () => {
  const obs = new FlowObserver({ capacity: 7, nodeName: 'node-1', version: 'test' });
  const got: FlowsResponse[] = [];
  let release: () => void = () => undefined;
  let stalled = false;
  const sink: FlowsSink = {
    write(r) {
      got.push(r);
      // The transport's buffer is full after the first flow.
      stalled = got.length === 1;
      return !stalled;
    },
    drained: () => new Promise<void>((resolve) => (release = resolve)),
    end: () => undefined,
  };
  const q = obs.getFlows({ follow: true, whitelist: [{ verdict: ['DROPPED'] }] }, sink);
  obs.add([flow({ verdict: 'DROPPED' })]);
  await new Promise((r) => setImmediate(r));
  assert.equal(got.length, 1);
  // While it waits for the transport, 20 more flows lap it.
  obs.add(Array.from({ length: 20 }, () => flow({ verdict: 'DROPPED' })));
  release();
  await new Promise((r) => setImmediate(r));
  const lost = got.find((r) => r.response_types === 'lost_events');
  assert.ok(lost && lost.response_types === 'lost_events');
  assert.equal(lost.lost_events.source, 'HUBBLE_RING_BUFFER');
  assert.equal(Number(lost.lost_events.num_events_lost), 13);
  assert.equal(got.filter((r) => r.response_types === 'flow').length, 1 + 7);
  assert.equal(obs.lost.HUBBLE_RING_BUFFER, 13);
  q.cancel();
  await q.done;
});

test('kernel ring-buffer losses reach a follower as a PERF_EVENT_RING_BUFFER lost event', async () => {
  const obs = new FlowObserver({ capacity: 7, nodeName: 'node-1', version: 'test' });
  const s = collect();
  const q = obs.getFlows({ follow: true }, s);
  obs.noteLost('PERF_EVENT_RING_BUFFER', 5);
  await new Promise((r) => setImmediate(r));
  q.cancel();
  await q.done;
  const r = s.got[0];
  assert.ok(r && r.response_types === 'lost_events');
  assert.equal(r.lost_events.source, 'PERF_EVENT_RING_BUFFER');
  assert.equal(r.lost_events.num_events_lost, '5');
});

test('GetFlows follow: a caught-up follower gets a burst larger than the store whole, in the call that stores it', async () => {
  const obs = new FlowObserver({ capacity: 7, nodeName: 'node-1', version: 'test' });
  const s = collect();
  const q = obs.getFlows({ follow: true }, s);
  await new Promise((r) => setImmediate(r));
  const burst = Array.from({ length: 100 }, () => flow());
  obs.add(burst);
  // No turn of the event loop in between: the follower was handed every flow by add() itself.
  assert.deepEqual(s.got.map((r) => (r.response_types === 'flow' ? r.flow.uuid : 'lost')), burst.map((f) => f.uuid));
  assert.equal(obs.lost.HUBBLE_RING_BUFFER, 0);
  q.cancel();
  await q.done;
});
