import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { timestampFromNs, type Flow } from './flow.js';
import { CounterCells, HistogramCells } from './metric-cells.js';
import { FlowMetrics } from './metrics.js';

function flow(i: number): Flow {
  const drop = i % 4 === 0;
  return {
    time: timestampFromNs(BigInt(i)),
    uuid: `u${i}`,
    verdict: drop ? 'DROPPED' : 'FORWARDED',
    ...(drop ? { drop_reason_desc: 'POLICY_DENIED', drop_reason: 133 } : {}),
    IP: { source: '10.0.0.1', destination: '10.0.0.2', ipVersion: 'IPv4' },
    l4: { protocol: 'TCP', TCP: { source_port: 40000 + i, destination_port: i % 2 === 0 ? 80 : 443, flags: { SYN: true, ACK: i % 2 === 1 } } },
    source: { identity: 300, labels: [] },
    destination: { identity: 301, labels: [] },
    Type: 'L3_L4',
    node_name: 'n',
    event_type: { type: drop ? 1 : 5, sub_type: 0 },
    traffic_direction: 'INGRESS',
  };
}

const value = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

test('flow metrics: every flow processed before a scrape is in it, across scrapes, with Hubble names and labels', async () => {
  const m = new FlowMetrics(['flow', 'drop', 'tcp', 'port-distribution']);
  m.process(Array.from({ length: 100 }, (_, i) => flow(i)));
  let text = await m.registry.metrics();
  assert.equal(value(text, 'hubble_flows_processed_total{protocol="TCP",type="PolicyVerdict",subtype="",verdict="FORWARDED"}'), 75);
  assert.equal(value(text, 'hubble_flows_processed_total{protocol="TCP",type="Drop",subtype="",verdict="DROPPED"}'), 25);
  assert.equal(value(text, 'hubble_drop_total{reason="POLICY_DENIED",protocol="TCP"}'), 25);
  assert.equal(value(text, 'hubble_tcp_flags_total{flag="SYN",family="IPv4"}'), 100);
  assert.equal(value(text, 'hubble_tcp_flags_total{flag="ACK",family="IPv4"}'), 50);
  assert.equal(value(text, 'hubble_port_distribution_total{protocol="TCP",port="443"}'), 50);
  assert.equal(value(text, 'hubble_port_distribution_total{protocol="TCP",port="80"}'), 25);
  // A second batch adds to what the first scrape showed; nothing is counted twice.
  m.process(Array.from({ length: 4 }, (_, i) => flow(i)));
  text = await m.registry.metrics();
  assert.equal(value(text, 'hubble_drop_total{reason="POLICY_DENIED",protocol="TCP"}'), 26);
  assert.equal(value(text, 'hubble_flows_processed_total{protocol="TCP",type="PolicyVerdict",subtype="",verdict="FORWARDED"}'), 78);
});

test('metric cells: one label object per key; counters and histograms hold every observation at a scrape', async () => {
  const r = new Registry();
  const cells = new CounterCells<'k'>();
  const c: Counter<'k'> = new Counter({ name: 'c_total', help: 'h', labelNames: ['k'], registers: [r], collect: () => cells.flushInto(c) });
  const hc = new HistogramCells<'k'>();
  const h: Histogram<'k'> = new Histogram({ name: 'h_seconds', help: 'h', labelNames: ['k'], buckets: [1], registers: [r], collect: () => hc.flushInto(h) });
  hc.bind(h);
  let made = 0;
  for (let i = 0; i < 300; i += 1) {
    cells.add('a', () => (made++, { k: 'a' }));
    hc.observe('a', () => ({ k: 'a' }), 0.5);
  }
  assert.equal(made, 1, 'the label object is built once per key');
  const text = await r.metrics();
  assert.equal(value(text, 'c_total{k="a"}'), 300);
  assert.equal(value(text, 'h_seconds_count{k="a"}'), 300);
  assert.equal(value(text, 'h_seconds_bucket{le="1",k="a"}'), 300);
});
