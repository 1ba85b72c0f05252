/**
 * The node's L7 path without the agent, for tests that play the agent's part:
 * pods on veths in namespaces, a policy engine fed their labels and a policy
 * text, the node's real Envoy (ProxyManager) and the real kernel datapath
 * (EndpointManager). `sync()` does what the agent's reconciler does:
 * engine.flush() → proxy.apply() (waits for Envoy's ACK) → only then the
 * ipcache and the endpoints' policies in the kernel. Everything is removed
 * after the test, also when it fails.
 *
 *   const w = await startL7World(t, { tag: 'l7', octet: 88, portBase: 21000, pods: [['client', 0], ['api', 4]], policies: TEXT });
 *   const r = await w.sync();
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import { loadPolicyText, PolicyEngine } from '../../src/policy/index.js';
import { stopProcesses } from '../../envoy/orphans.js';
import { type PolicyRoutingOptions, removePolicyRouting } from '../../src/proxy/policy-routing.js';
import { type ProxyApplyInput, type ProxyApplyResult, ProxyManager, type ProxyManagerOptions } from '../../src/proxy/proxy-manager.js';
import type { SecretData } from '../../src/proxy/sds.js';
import { envoysOfWorkDir } from '../../src/proxy/supervisor-process.js';
import { run } from '../../src/util/exec.js';
import { createLogger, type Logger } from '../../src/util/log.js';
import { tempPinDir } from './bpffs.js';
import { Sandbox } from '../../src/devcluster/netns.js';

export interface L7Pod {
  ns: string;
  hostIf: string;
  ip: string;
}

export interface L7World {
  sb: Sandbox;
  /** Pods by endpoint id ("default/<name>"). */
  pods: Map<string, L7Pod>;
  pod(name: string): L7Pod;
  /** 10.<k>.<octet>.<n>: pod n+2 and its host end n+1 for the pod placed at n. */
  net(n: number): string;
  engine: PolicyEngine;
  proxy: ProxyManager;
  dp: EndpointManager;
  stateDir: string;
  /** The datapath's pin directory (the proxy steering's maps are pinned there too). */
  pinDir: string;
  routing: PolicyRoutingOptions;
  log: Logger;
  /** A second ProxyManager on the same state directory (an agent restart); stopped after the test. */
  restartProxy(xdsMode?: 'sotw' | 'delta', extra?: Partial<Pick<ProxyManagerOptions, 'envoyBinaryPath' | 'replicas' | 'drainTimeS'>>): Promise<ProxyManager>;
  /** The agent's order against `proxy` (default: the first one): translate, wait for the ACK, then program the datapath. */
  sync(proxy?: ProxyManager, extra?: { secrets?: SecretData }): Promise<ProxyApplyResult>;
  /** What sync() hands the proxy: every pod's policy and addresses, the ipcache's identities. */
  applyInput(): ProxyApplyInput;
  /** The ProxyManager's node name and proxy port range (for another process playing the agent). */
  nodeName: string;
  portRange: readonly [number, number];
}

/** The parsed documents of a policy text (fails the test on any problem). */
export function policyDocs(text: string) {
  const r = loadPolicyText(text);
  assert.deepEqual(r.problems, []);
  return r.policies.map((p) => p.document);
}

export async function startL7World(
  t: { after(fn: () => unknown): void },
  o: {
    tag: string;
    octet: number;
    portBase: number;
    pods: ReadonlyArray<readonly [string, number]>;
    policies: string;
    /** proxy.replicas of the first ProxyManager (default 1). */
    replicas?: number;
    /** Envoy's drain time in seconds (default: ProxyManager's). */
    drainTimeS?: number;
    /** Upstream HTTP idle timeout and retries (default: ProxyManager's). */
    upstream?: ProxyManagerOptions['upstream'];
  },
): Promise<L7World> {
  const sb = new Sandbox(o.tag);
  t.after(() => sb.cleanup());
  const pins = tempPinDir(o.tag);
  t.after(() => EndpointManager.destroyPins(pins.path));
  const stateDir = mkdtempSync(join(tmpdir(), `meshd-${o.tag}-`));
  t.after(() => rmSync(stateDir, { recursive: true, force: true }));
  // Envoys outlive a ProxyManager that detached (an agent restart): none of this state directory survives the test.
  t.after(() => stopProcesses(envoysOfWorkDir(join(stateDir, 'envoy'))));

  const k = 100 + (process.pid % 150);
  const net = (n: number) => `10.${k}.${o.octet}.${n}`;
  const routing = { mark: 0xb00, mask: 0xf00, table: 40000 + (process.pid % 20000), priority: 8000 + (process.pid % 1000) };
  const portBase = o.portBase + (process.pid % 1000) * 10;

  const pods = new Map<string, L7Pod>();
  for (const [name, n] of o.pods) {
    const ns = await sb.netns(name.slice(0, 3));
    const hostIf = sb.name(`h${name.slice(0, 2)}`);
    await sb.vethToHost(ns, { hostIf, podIf: 'eth0', hostIp: `${net(n + 1)}/30`, podIp: `${net(n + 2)}/30`, defaultRoute: true });
    await run('sysctl', ['-qw', `net.ipv4.conf.${hostIf}.forwarding=1`]);
    pods.set(`default/${name}`, { ns, hostIf, ip: net(n + 2) });
  }
  const pod = (name: string) => {
    const p = pods.get(`default/${name}`);
    assert.ok(p, name);
    return p;
  };

  const engine = new PolicyEngine();
  await engine.upsertNamespace('default');
  for (const [id, p] of pods) {
    const name = id.split('/')[1] ?? '';
    await engine.upsertEndpoint({ namespace: 'default', name, labels: { app: name }, ips: [p.ip] });
  }
  for (const d of policyDocs(o.policies)) await engine.upsertPolicy(d);
  engine.flush();

  const log = createLogger({ test: o.tag }, { level: 'warn' });
  t.after(() => removePolicyRouting(routing));
  const nodeName = `${o.tag}-test-${process.pid}`;
  const portRange = [portBase, portBase + 9] as const;
  const startProxy = async (xdsMode: 'sotw' | 'delta', extra: Partial<ProxyManagerOptions> = {}) => {
    const p = await ProxyManager.start({ nodeName, stateDir, portRange, xdsMode, log, routing, ackTimeoutMs: 20_000, pinDir: pins.path, ...extra });
    t.after(() => p.stop());
    return p;
  };
  const proxy = await startProxy('delta', {
    ...(o.replicas !== undefined ? { replicas: o.replicas } : {}),
    ...(o.drainTimeS !== undefined ? { drainTimeS: o.drainTimeS } : {}),
    ...(o.upstream !== undefined ? { upstream: o.upstream } : {}),
  });
  const dp = await EndpointManager.open({ pinDir: pins.path, proxyPort: (kind, dir) => proxy.proxyPort(kind, dir) });
  t.after(() => dp.close());
  for (const [id, p] of pods) {
    const identity = engine.endpointIdentity(id);
    assert.ok(identity !== undefined);
    await dp.addEndpoint({ endpointId: id, ifname: p.hostIf, identity, ips: [p.ip] });
  }

  const applyInput = (): ProxyApplyInput => {
    engine.flush();
    const policies = engine.endpointPolicies().filter((p) => pods.has(p.endpointId));
    const identityIps = new Map<number, string[]>();
    for (const e of engine.ipcache()) identityIps.set(e.identity, [...(identityIps.get(e.identity) ?? []), e.prefix]);
    return { endpoints: policies.map((policy) => ({ policy, ips: [pod(policy.endpointId.split('/')[1] ?? '').ip] })), identityIps };
  };
  const sync = async (via: ProxyManager = proxy, extra: { secrets?: SecretData } = {}): Promise<ProxyApplyResult> => {
    const input = applyInput();
    const r = await via.apply({ ...input, ...extra });
    dp.syncIpcache(engine.ipcache());
    for (const e of input.endpoints) dp.updatePolicy(e.policy);
    return r;
  };
  return { sb, pods, pod, net, engine, proxy, dp, stateDir, pinDir: pins.path, routing, log, restartProxy: (mode = 'delta', extra = {}) => startProxy(mode, extra), sync, applyInput, nodeName, portRange };
}
