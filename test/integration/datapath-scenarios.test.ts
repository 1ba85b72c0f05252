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
import { requirePrivileges } from '../helpers/privileged.js';

const dir = repoPath('src', 'policy', 'testdata');

function ipOf(s: LoadedScenario['scenario'], ref: string): string | undefined {
  if (isIP(ref)) return ref;
  if (ref.startsWith('node:')) return s.nodes?.find((n) => n.name === ref.slice(5))?.ips?.[0];
  const [ns, name] = ref.split('/');
  return s.endpoints?.find((e) => e.namespace === ns && e.name === name)?.ips?.[0];
}

test('every policy scenario: the kernel decides what the reference lookup decides', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('dpscn');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const dp = await EndpointManager.open({ pinDir: pins.path, config: { verdictSample: 1 }, proxyPort: (kind, d) => (kind === 'http' ? 15001 : kind === 'dns' ? 15053 : 15092) + (d === 'ingress' ? 100 : 0) });
  t.after(() => dp.close());
  const events = new Map<number, FlowRecord>();
  const stream = dp.onFlowEvents((rs) => {
    for (const r of rs) events.set(r.src.port === 0 ? r.dst.port : r.src.port, r);
  });
  t.after(() => stream.close());

  type Check = { where: string; sport: number; want: string; wantRemote: number; got: string };
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
      const srcIp = ipOf(s, flow.src);
      const dstIp = ipOf(s, flow.dst);
      if (tr.error || tr.service || (proto !== 'TCP' && proto !== 'UDP') || !srcIp || !dstIp || isIP(srcIp) !== isIP(dstIp)) {
        skipped += 1;
        continue;
      }
      for (const side of ['egress', 'ingress'] as const) {
        const d = tr[side];
        if (!d || d.endpoint.startsWith('node:')) continue; // the host firewall is not this datapath
        const pol = engine.endpointPolicy(d.endpoint);
        assert.ok(pol, d.endpoint);
        dp.removeEndpoint('scenario/ep');
        await dp.addEndpoint({ endpointId: 'scenario/ep', ifname: 'lo', identity: pol.identity, attach: false });
        dp.updatePolicy({ ...pol, endpointId: 'scenario/ep' });
        sport += 1;
        const frame = buildFrame({ src: srcIp, dst: dstIp, proto: proto === 'TCP' ? 6 : 17, sport, dport: flow.dport ?? 0 });
        const prog = side === 'egress' ? dp.programFds().fromPod : dp.programFds().toPod;
        const rv = native.progTestRun(prog, frame).retval;
        checks.push({
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
    const ev = events.get(c.sport);
    let got = c.got;
    if (got === 'SHOT') got = ev?.dropReason === 'PROXY_UNAVAILABLE' || ev?.dropReason === 'PROXY_UNREACHABLE_HOOK' ? 'REDIRECT' : 'DENY';
    const remote = ev ? (ev.direction === 'egress' ? ev.dstIdentity : ev.srcIdentity) : undefined;
    if (got !== c.want) mismatches.push(`${c.where}: kernel ${got} (${ev?.dropReason ?? ev?.type ?? 'no event'}), reference ${c.want}`);
    if (remote !== c.wantRemote) mismatches.push(`${c.where}: kernel saw identity ${String(remote)}, engine ${c.wantRemote}`);
  }
  t.diagnostic(`${checks.length} kernel decisions compared, ${skipped} flows not expressible as a TCP/UDP packet here`);
  assert.ok(checks.length >= 40, `only ${checks.length} checks`);
  assert.deepEqual(mismatches, []);
});
