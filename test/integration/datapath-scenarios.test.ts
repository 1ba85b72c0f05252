/**
 * The policy engine's scenarios (src/policy/testdata) run through the kernel:
 * for every flow and every side with a local endpoint, the engine's
 * EndpointPolicy and ipcache are written by the endpoint manager and the
 * packet is judged by the real program (BPF_PROG_TEST_RUN); the verdict must
 * be the reference lookup's (trace.ts) and the identity the kernel resolved
 * from the ipcache must be the engine's.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { isIP } from 'node:net';
import { native } from '../../native/index.js';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import type { FlowRecord } from '../../src/datapath/endpoint/flow-events.js';
import { buildFrame, TcAct } from '../../src/datapath/packet.js';
import { buildScenarioEngine, loadScenarioFile, traceFlow, type LoadedScenario } from '../../src/policy/trace.js';
import { repoPath } from '../../src/util/paths.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const dir = repoPath('src', 'policy', 'testdata');

/** The flow end's address; for an ICMPv6 flow its IPv6 one. */
function ipOf(s: LoadedScenario['scenario'], ref: string, v6: boolean): string | undefined {
  if (isIP(ref)) return ref;
  const ips = ref.startsWith('node:') ? s.nodes?.find((n) => n.name === ref.slice(5))?.ips : s.endpoints?.find((e) => `${e.namespace}/${e.name}` === ref)?.ips;
  return v6 ? ips?.find((ip) => isIP(ip) === 6) : ips?.[0];
}

/** IP protocol numbers of the scenario format's protocol names. */
const PROTO_NUMBER: Readonly<Record<string, number>> = { TCP: 6, UDP: 17, SCTP: 132, ICMP: 1, ICMPv6: 58, VRRP: 112, IGMP: 2, GRE: 47, IPIP: 4, IPV6: 41, ESP: 50, AH: 51 };

test('every policy scenario: the kernel decides what the reference lookup decides', async (t) => {
  requirePrivileges();
  // The endpoint on an interface of its own: ifindex 1 (lo, the test run's default) is the host endpoint's key.
  const sb = new Sandbox('dpscn');
  t.after(() => sb.cleanup());
  const veth = await sb.hostLink('ep');
  const ifindex = native.ifNameToIndex(veth);
  const pins = tempPinDir('dpscn');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const dp = await EndpointManager.open({ pinDir: pins.path, config: { verdictSample: 1 }, proxyPort: (kind, d) => (kind === 'http' ? 15001 : kind === 'dns' ? 15053 : 15092) + (d === 'ingress' ? 100 : 0) });
  t.after(() => dp.close());
  // TCP/UDP events are found by their unique source port; ICMP and other protocols carry none, so
  // those packets are run one at a time and take the next event that arrives.
  const events = new Map<number, FlowRecord>();
  const portless: FlowRecord[] = [];
  const stream = dp.onFlowEvents((rs) => {
    for (const r of rs) {
      if (r.protocol === 6 || r.protocol === 17) events.set(r.src.port === 0 ? r.dst.port : r.src.port, r);
      else portless.push(r);
    }
  });
  const nextPortless = async (before: number): Promise<FlowRecord | undefined> => {
    for (let i = 0; i < 100 && portless.length <= before; i += 1) await new Promise((r) => setTimeout(r, 10));
    return portless[before];
  };
  t.after(() => stream.close());

  type Check = { where: string; sport: number; want: string; wantRemote: number; got: string; event?: FlowRecord | undefined; portless: boolean; ndp: boolean };
  const checks: Check[] = [];
  let sport = 20000;
  let skipped = 0;
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml')).sort()) {
    const loaded = loadScenarioFile(`${dir}/${f}`);
    const s = loaded.scenario;
    const { engine } = await buildScenarioEngine(loaded);
    dp.syncIpcache(engine.ipcache());
    for (const [i, flow] of s.flows.entries()) {
      const tr = traceFlow(engine, s, flow);
      const proto = flow.protocol ?? 'TCP';
      const protoNumber = PROTO_NUMBER[proto] ?? 0;
      const srcIp = ipOf(s, flow.src, proto === 'ICMPv6');
      const dstIp = ipOf(s, flow.dst, proto === 'ICMPv6');
      if (tr.error || tr.service || proto === 'SCTP' || !srcIp || !dstIp || isIP(srcIp) !== isIP(dstIp)) {
        skipped += 1;
        continue;
      }
      for (const side of ['egress', 'ingress'] as const) {
        const d = tr[side];
        if (!d || d.endpoint.startsWith('node:')) continue; // the host firewall is not this datapath
        const pol = engine.endpointPolicy(d.endpoint);
        assert.ok(pol, d.endpoint);
        dp.removeEndpoint('scenario/ep');
        await dp.addEndpoint({ endpointId: 'scenario/ep', ifname: veth, identity: pol.identity, attach: false });
        dp.updatePolicy({ ...pol, endpointId: 'scenario/ep' });
        sport += 1;
        const icmp = protoNumber === 1 || protoNumber === 58;
        // ICMP: the scenario's dport is the type; an echo request's identifier stands in for the source port.
        const frame = icmp
          ? buildFrame({ src: srcIp, dst: dstIp, proto: protoNumber, icmpType: flow.dport ?? 0, sport, dport: 0 })
          : buildFrame({ src: srcIp, dst: dstIp, proto: protoNumber, sport, dport: flow.dport ?? 0 });
        const prog = side === 'egress' ? dp.programFds().fromPod : dp.programFds().toPod;
        const portlessRun = protoNumber !== 6 && protoNumber !== 17;
        const before = portless.length;
        const rv = native.progTestRun(prog, frame, { ifindex }).retval;
        const event = portlessRun ? await nextPortless(before) : undefined;
        // A conntrack entry left by this run would answer the next run of the same tuple.
        if (portlessRun) dp.removeEndpoint('scenario/ep');
        checks.push({
          event,
          portless: portlessRun,
          ndp: protoNumber === 58 && (flow.dport ?? 0) >= 133 && (flow.dport ?? 0) <= 137,
          where: `${f} flows[${i}] ${flow.name ?? ''} ${side} at ${d.endpoint}`,
          sport,
          want: d.verdict,
          wantRemote: side === 'egress' ? tr.dstIdentity : tr.srcIdentity,
          got: rv === TcAct.OK ? 'ALLOW' : 'SHOT',
        });
      }
    }
  }
  await new Promise((r) => setTimeout(r, 500));
  const mismatches: string[] = [];
  for (const c of checks) {
    const ev = c.portless ? c.event : events.get(c.sport);
    let got = c.got;
    if (got === 'SHOT') got = ev?.dropReason === 'PROXY_UNAVAILABLE' || ev?.dropReason === 'PROXY_UNREACHABLE_HOOK' ? 'REDIRECT' : 'DENY';
    const remote = ev ? (ev.direction === 'egress' ? ev.dstIdentity : ev.srcIdentity) : undefined;
    if (got !== c.want) mismatches.push(`${c.where}: kernel ${got} (${ev?.dropReason ?? ev?.type ?? 'no event'}), reference ${c.want}`);
    // Neighbour discovery passes unjudged (no event): the kernel keeps IPv6 working whatever the policy.
    if (remote !== c.wantRemote && !c.ndp) mismatches.push(`${c.where}: kernel saw identity ${String(remote)}, engine ${c.wantRemote}`);
  }
  const portlessChecks = checks.filter((c) => c.portless).length;
  t.diagnostic(`${checks.length} kernel decisions compared (${portlessChecks} ICMP or other protocols), ${skipped} flows not expressible as a packet here`);
  assert.ok(checks.length >= 40, `only ${checks.length} checks`);
  assert.ok(portlessChecks >= 10, `only ${portlessChecks} ICMP/extended-protocol checks`);
  assert.deepEqual(mismatches, []);
});
