/**
 * The cluster the Gateway API conformance suite runs against, in this
 * process: kube-apiserver, etcd and kube-controller-manager
 * (kube-cluster.ts, `controllers: true`), meshd's CRDs and RBAC, optionally
 * the Gateway API CRDs, the GatewayClass `meshd` and a CiliumLoadBalancerIPPool,
 * one meshd agent in Kubernetes mode as the `kube-system/meshd`
 * ServiceAccount, and a ConformanceNode that binds and runs every Pod through
 * the agent's meshd-cni with echo-basic standing for the suite's images.
 *
 *   const world = await startConformanceWorld(t, { nodeName: 'conformance' });
 *   await world.kube.apply(deployment);           // controller-manager makes the Pods, the node runs them
 *
 * Cleanup (registered with `t.after` before anything starts, so it also runs
 * after a failure half-way) goes in reverse: the node's pods (CNI DEL while
 * the agent still runs), the agent, the pool's local route, the cluster.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configSchema } from '../../src/agent/config.js';
import type { RunAgentOptions } from '../../src/agent/run.js';
import { MeshdError } from '../../src/util/errors.js';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from './agent-node.js';
import { ConformanceNode } from './conformance-node.js';
import { kubeBinDir, startKubeCluster, type KubeCluster } from '../../src/devcluster/kube-cluster.js';
import { FAST_SOURCE, installMeshd } from './kube-nodes.js';

interface After {
  after(fn: () => Promise<void> | void): void;
}

/** The gatewayClassName and controllerName meshd's Gateway API controller answers to. */
export const GATEWAY_CLASS = 'meshd';
export const GATEWAY_CONTROLLER = 'meshd.io/gateway-controller';

/**
 * The images the suite's manifests (conformance/base/manifests.yaml and
 * tests/*.yaml of v1.7.0) run for the Gateway profiles. Both tags are the
 * same echo server (v0.2.0 adds the UDP echo mode the binary has). The mesh
 * manifests' echo-advanced image has no published source: not mapped, so a
 * Pod of it is refused.
 */
export const ECHO_BASIC_IMAGES = ['registry.k8s.io/gateway-api/conformance/echo-basic:v0.1.0', 'registry.k8s.io/gateway-api/conformance/echo-basic:v0.2.0'] as const;

/** The binary directory of scripts/gateway-conformance.sh (the same rule as its --print-bin-dir). */
export function conformanceBinDir(): string {
  const r = spawnSync('bash', [repoPath('scripts', 'gateway-conformance.sh'), '--print-bin-dir'], { encoding: 'utf8' });
  const dir = r.stdout.trim();
  if (r.status !== 0 || dir === '') throw new MeshdError('MESHD_CONFORMANCE_BINARIES_MISSING', `scripts/gateway-conformance.sh --print-bin-dir failed: ${r.stderr.trim()}`, { kind: 'failed' });
  return dir;
}

/** The module directory of sigs.k8s.io/gateway-api (scripts/gateway-api.sh). */
export function gatewayApiModuleDir(): string {
  const r = spawnSync('bash', [repoPath('scripts', 'gateway-api.sh')], { encoding: 'utf8' });
  const dir = r.stdout.trim();
  if (r.status !== 0 || dir === '') throw new MeshdError('MESHD_CONFORMANCE_BINARIES_MISSING', `scripts/gateway-api.sh failed: ${r.stderr.trim()}`, { kind: 'failed' });
  return dir;
}

export interface ConformanceWorldOptions {
  nodeName?: string;
  /** AgentNode slot (pod CIDR). */
  slot?: number;
  /** Run the node's Envoy (the Gateway's listeners live there). Default false. */
  envoy?: boolean;
  /** Set `gatewayAPI.enabled: true` when this agent build has the key. Default false. */
  gatewayAPI?: boolean;
  /** Install the Gateway API CRDs ('experimental' is a superset of 'standard'), and the GatewayClass. */
  gatewayCrds?: 'standard' | 'experimental';
  /** A CiliumLoadBalancerIPPool of this IPv4 CIDR, routed locally on the host for the run. */
  lbPool?: string;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface ConformanceWorld {
  kube: KubeCluster;
  agent: AgentNode;
  node: ConformanceNode;
  /** Whether the agent was started with gatewayAPI.enabled (false: the key is unknown to it, or not asked for). */
  gatewayApiEnabled: boolean;
  /** The cgroup the agent's socket LB hooks attach to (the host's root in production). */
  hostCgroup: string;
  binDir: string;
}

/** Applies every CRD of the Gateway API module's channel and waits until they are served. */
async function installGatewayCrds(kube: KubeCluster, channel: 'standard' | 'experimental'): Promise<void> {
  const dir = join(gatewayApiModuleDir(), 'config', 'crd', channel);
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.yaml') && n !== 'kustomization.yaml').sort()) {
    // Server-side: some of these CRDs are larger than the last-applied annotation allows.
    const r = await kube.kubectl(['apply', '--server-side', '-f', '-'], { input: readFileSync(join(dir, f), 'utf8') });
    if (r.code !== 0) throw new MeshdError('MESHD_KUBE_TEST_KUBECTL_FAILED', `applying ${channel}/${f} exited ${r.code}: ${r.stderr.trim()}`, { kind: 'failed' });
  }
  const r = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
  if (r.code !== 0) throw new MeshdError('MESHD_KUBE_TEST_KUBECTL_FAILED', `kubectl wait for the Gateway API CRDs exited ${r.code}: ${r.stderr.trim()}`, { kind: 'failed' });
}

export async function startConformanceWorld(t: After, o: ConformanceWorldOptions = {}): Promise<ConformanceWorld> {
  const log = o.log ?? (() => undefined);
  const binDir = conformanceBinDir();
  const echoBasic = join(binDir, 'echo-basic');
  if (!existsSync(echoBasic)) throw new MeshdError('MESHD_CONFORMANCE_BINARIES_MISSING', `${echoBasic} not found; build it with: bash scripts/gateway-conformance.sh`, { kind: 'not-found' });
  if (!existsSync(join(kubeBinDir(), 'kube-controller-manager'))) {
    throw new MeshdError('MESHD_CONFORMANCE_BINARIES_MISSING', `kube-controller-manager not found in ${kubeBinDir()}; build it with: bash scripts/k8s-binaries.sh`, { kind: 'not-found' });
  }
  const nodeName = o.nodeName ?? 'conformance';
  const made: { kube?: KubeCluster; agent?: AgentNode; node?: ConformanceNode; route?: string } = {};
  t.after(async () => {
    await made.node?.close().catch((e: unknown) => log(`closing the test node: ${String(e)}`));
    await made.agent?.cleanup().catch((e: unknown) => log(`cleaning up the agent: ${String(e)}`));
    if (made.route !== undefined) await run('ip', ['route', 'del', 'local', made.route, 'dev', 'lo']).catch((e: unknown) => log(`removing the local route: ${String(e)}`));
  });

  const known = Object.hasOwn(configSchema.shape, 'gatewayAPI.enabled');
  const gatewayApiEnabled = o.gatewayAPI === true && known;
  if (o.gatewayAPI === true && !known) log('this agent build has no gatewayAPI.enabled key: running without a Gateway API controller');
  const agent = (made.agent = new AgentNode({ nodeName, 'envoy.enabled': o.envoy === true, ...(gatewayApiEnabled ? { 'gatewayAPI.enabled': true } : {}) }, o.slot ?? 40));
  mkdirSync(agent.manifests, { recursive: true }); // cleanup() restarts a stopped agent in standalone mode from here for CNI DEL

  log('starting kube-apiserver, etcd and kube-controller-manager');
  const kube = (made.kube = await startKubeCluster({ t, controllers: true }));
  await installMeshd(kube);
  if (o.gatewayCrds !== undefined) {
    log(`installing the Gateway API CRDs (${o.gatewayCrds} channel)`);
    await installGatewayCrds(kube, o.gatewayCrds);
    await kube.apply({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: GATEWAY_CLASS }, spec: { controllerName: GATEWAY_CONTROLLER } });
  }
  if (o.lbPool !== undefined) {
    // Local: the host answers for the pool's addresses itself, so nothing sent to a Gateway address leaves the machine.
    await run('ip', ['route', 'add', 'local', o.lbPool, 'dev', 'lo']);
    made.route = o.lbPool;
    await kube.apply({ apiVersion: 'cilium.io/v2', kind: 'CiliumLoadBalancerIPPool', metadata: { name: 'conformance' }, spec: { blocks: [{ cidr: o.lbPool }] } });
  }

  const sa = await kube.serviceAccountKubeconfig('kube-system', 'meshd');
  const agentOptions: Partial<RunAgentOptions> = {
    standaloneDir: undefined,
    kubeconfigPath: sa.kubeconfigPath,
    kubeSource: FAST_SOURCE,
    policyStatus: { coalesceMs: 20, backoff: { initialMs: 100, maxMs: 1_000 } },
  };
  log(`starting the meshd agent (node ${nodeName}, envoy ${o.envoy === true ? 'on' : 'off'}, gatewayAPI ${gatewayApiEnabled ? 'on' : 'off'})`);
  await agent.start(agentOptions);

  const images = Object.fromEntries(ECHO_BASIC_IMAGES.map((i) => [i, echoBasic]));
  const node = (made.node = new ConformanceNode({ kube, nodeName, cniConfDir: agent.config['cni.confDir'], cniBinDir: agent.config['cni.binDir'], images, logDir: join(kube.dir, 'pods'), log }));
  await node.start();
  return { kube, agent, node, gatewayApiEnabled, hostCgroup: agent.config['cgroup.hostRoot'], binDir };
}
