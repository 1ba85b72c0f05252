/**
 * meshd-cni: the CNI plugin's commands (ADD, DEL, CHECK, VERSION, STATUS,
 * GC) as one function from (environment, stdin) to (stdout, exit status),
 * which is exactly the contract a container runtime sees. plugin-main.ts
 * binds it to a process.
 *
 *   const { stdout, exitCode } = await runPlugin(process.env, stdinText);
 *
 * ADD (chainingMode none) in order, each step undone in reverse if a later
 * one fails, so a failed ADD leaves nothing behind:
 *   1. ask the agent's endpoint API for health (fail fast, before touching anything)
 *   2. take addresses (meshd's pool, or the delegated IPAM plugin)
 *   3. create and configure the veth pair
 *   4. write the attachment record
 *   5. register the endpoint with the agent
 * DEL undoes the same steps from the record (or, without one, from the
 * names and reservations derived from the key) and never fails for
 * something that is already gone.
 */
import { AttachmentStore, type AttachmentRecord } from './attachment-store.js';
import {
  CniCode,
  CniError,
  LATEST_VERSION,
  SUPPORTED_VERSIONS,
  formatResult,
  isSupportedVersion,
  parseEnv,
  parseNetConf,
  type CniEnv,
  type CniResult,
  type NetConf,
} from './cni-spec.js';
import { EndpointApiClient, EndpointApiError } from './endpoint-api-client.js';
import type { EndpointRegistration } from './endpoint-api.js';
import { execPlugin, findPlugin } from './ipam-delegate.js';
import { IpamStore, parsePool, type Pool } from './ipam-store.js';
import {
  createPodLink,
  deletePodLink,
  hostInterfaceName,
  inspectPodInterface,
  interfaceByIndex,
  linkExists,
  macFrom,
  type PodAddress,
  type PodRoute,
} from './pod-link.js';
import { describeError, type MeshdError } from '../util/errors.js';

export interface PluginOutput {
  stdout: string;
  /** Diagnostics for the runtime's log. */
  stderr: string;
  exitCode: number;
}

/** The IPAM used by a configuration: meshd's own pool or a delegated plugin. */
type Ipam = { kind: 'meshd'; store: IpamStore } | { kind: 'delegate'; type: string };

/** Damaged state files are reported in the plugin's diagnostics (see ipam-store.ts and attachment-store.ts). */
const reportTo =
  (log: string[]) =>
  (e: MeshdError): void => {
    log.push(describeError(e));
  };

function attachmentsOf(conf: NetConf, log: string[]): AttachmentStore {
  return new AttachmentStore(conf.stateDir, conf.name, { onCorrupt: reportTo(log) });
}

function meshdPool(conf: NetConf, pool: Pool, log: string[]): Ipam {
  return { kind: 'meshd', store: new IpamStore(conf.stateDir, conf.name, pool, { onCorrupt: reportTo(log) }) };
}

/** DEL and GC: a pod CIDR not known yet means nothing was allocated from it, so there is nothing to release. */
function ipamOrPending(conf: NetConf, log: string[]): Ipam | { kind: 'pending' } {
  if ((conf.ipam === undefined || conf.ipam.type === 'meshd') && conf.ipam?.subnet === undefined && conf.podCIDR === undefined && conf.ipam?.pending !== undefined) return { kind: 'pending' };
  return ipamOf(conf, log);
}

function ipamOf(conf: NetConf, log: string[]): Ipam {
  if (conf.ipam === undefined || conf.ipam.type === 'meshd') {
    const subnet = conf.ipam?.subnet ?? conf.podCIDR;
    if (subnet === undefined && conf.ipam?.pending !== undefined) {
      // The agent installs the conflist before it knows the node's CIDR; the runtime retries ADD until it does.
      throw new CniError(CniCode.TRY_AGAIN_LATER, 'MESHD_CNI_POD_CIDR_PENDING', `the node's pod CIDR is not known yet: ${conf.ipam.pending}`);
    }
    if (subnet === undefined) {
      throw new CniError(
        CniCode.INVALID_CONFIG,
        'MESHD_CNI_BAD_CONFIG',
        'network configuration: meshd IPAM needs "ipam.subnet" (or "podCIDR"): the pod CIDR of this node',
      );
    }
    const pool = parsePool(subnet, conf.ipam?.gateway, conf.ipam?.subnet !== undefined ? 'ipam.subnet' : 'podCIDR');
    return meshdPool(conf, pool, log);
  }
  return { kind: 'delegate', type: conf.ipam.type };
}

function agentError(e: unknown, what: string): CniError {
  if (e instanceof EndpointApiError) {
    if (e.code === 'MESHD_CNI_API_UNREACHABLE' || e.code === 'MESHD_CNI_API_TIMEOUT') {
      return new CniError(CniCode.TRY_AGAIN_LATER, 'MESHD_CNI_AGENT_UNAVAILABLE', `${what}: ${e.message}`, undefined, { cause: e });
    }
    return new CniError(CniCode.AGENT_REJECTED, 'MESHD_CNI_AGENT_REJECTED', `${what}: ${e.message}`, e.serverCode, { cause: e });
  }
  return new CniError(CniCode.IO_FAILURE, 'MESHD_CNI_AGENT_FAILED', `${what}: ${e instanceof Error ? e.message : String(e)}`, undefined, { cause: e });
}

function k8sArgs(env: CniEnv): EndpointRegistration['k8s'] {
  const k: EndpointRegistration['k8s'] = {};
  if (env.args.K8S_POD_NAMESPACE) k.namespace = env.args.K8S_POD_NAMESPACE;
  if (env.args.K8S_POD_NAME) k.name = env.args.K8S_POD_NAME;
  if (env.args.K8S_POD_UID) k.uid = env.args.K8S_POD_UID;
  return k;
}

/** The record of an attachment made now for this ADD; `how` is what differs between a primary and a chained ADD. */
function attachmentRecord(
  env: CniEnv,
  conf: NetConf,
  how: Pick<AttachmentRecord, 'hostInterface' | 'podMac' | 'ips' | 'ipam' | 'pool' | 'chained'>,
): AttachmentRecord {
  return { containerId: env.containerId, ifname: env.ifname, network: conf.name, netns: env.netns, ...how, createdAt: new Date().toISOString() };
}

function registration(rec: AttachmentRecord, env: CniEnv): EndpointRegistration {
  return {
    containerId: rec.containerId,
    ifname: rec.ifname,
    network: rec.network,
    netns: rec.netns,
    hostInterface: rec.hostInterface,
    podMac: rec.podMac,
    ips: rec.ips,
    k8s: k8sArgs(env),
    chained: rec.chained,
  };
}

function toHostPrefix(address: string): string {
  const ip = address.split('/')[0] ?? address;
  return ip.includes(':') ? `${ip}/128` : `${ip}/32`;
}

async function undoAll(undo: Array<() => unknown>): Promise<string[]> {
  const failures: string[] = [];
  for (const step of undo.reverse()) {
    try {
      await step();
    } catch (e) {
      failures.push(e instanceof Error ? e.message : String(e));
    }
  }
  return failures;
}

async function cmdAdd(env: CniEnv, conf: NetConf, stdin: string, log: string[]): Promise<string> {
  const key = { containerId: env.containerId, ifname: env.ifname };
  const api = new EndpointApiClient(conf.agentSocket);
  if (conf.chainingMode === 'generic-veth') return addChained(env, conf, api, log);
  if (conf.prevResult !== undefined) {
    throw new CniError(
      CniCode.INVALID_CONFIG,
      'MESHD_CNI_BAD_CONFIG',
      'network configuration: prevResult is set but chainingMode is "none": put meshd-cni first in the plugin list, or set chainingMode "generic-veth" to chain it after a primary plugin',
    );
  }
  const ipam = ipamOf(conf, log);
  const delegateBin = ipam.kind === 'delegate' ? findPlugin(ipam.type, env.path) : undefined;
  try {
    await api.health();
  } catch (e) {
    throw agentError(e, 'ADD refused before wiring the pod');
  }
  const attachments = attachmentsOf(conf, log);
  const undo: Array<() => unknown> = [];
  try {
    let addresses: PodAddress[];
    let routes: PodRoute[];
    let dns: CniResult['dns'];
    if (ipam.kind === 'meshd') {
      const a = ipam.store.allocate(key);
      undo.push(() => ipam.store.release(key, [a.address.split('/')[0] ?? '']));
      addresses = [a];
      routes = [{ dst: '0.0.0.0/0' }];
    } else {
      const bin = delegateBin ?? findPlugin(ipam.type, env.path);
      const r = await execPlugin(bin, 'ADD', env, stdin);
      undo.push(() => execPlugin(bin, 'DEL', env, stdin));
      const ips = r?.ips ?? [];
      if (ips.length === 0) {
        throw new CniError(CniCode.INVALID_CONFIG, 'MESHD_CNI_IPAM_FAILED', `IPAM plugin ${ipam.type} returned no addresses`);
      }
      addresses = ips.map((ip) => (ip.gateway ? { address: ip.address, gateway: ip.gateway } : { address: ip.address }));
      routes = (r?.routes ?? []).map((rt) => (rt.gw ? { dst: rt.dst, gw: rt.gw } : { dst: rt.dst }));
      if (routes.length === 0) {
        if (addresses.some((a) => a.gateway && !a.gateway.includes(':'))) routes.push({ dst: '0.0.0.0/0' });
        if (addresses.some((a) => a.gateway && a.gateway.includes(':'))) routes.push({ dst: '::/0' });
      }
      dns = r?.dns;
    }

    const hostIf = hostInterfaceName(conf.name, env.containerId, env.ifname);
    const hostMac = macFrom(`host\0${conf.name}\0${env.containerId}\0${env.ifname}`);
    const podMac = macFrom(`pod\0${conf.name}\0${env.containerId}\0${env.ifname}`);
    await createPodLink({ netns: env.netns, ifname: env.ifname, hostIf, hostMac, podMac, mtu: conf.mtu, addresses, routes, owner: `${env.containerId}/${env.ifname}` });
    undo.push(() => deletePodLink(hostIf));

    const record = attachmentRecord(env, conf, {
      hostInterface: hostIf,
      podMac,
      ips: addresses.map((a) => toHostPrefix(a.address)),
      ipam: ipam.kind === 'meshd' ? 'meshd' : ipam.type,
      pool: ipam.kind === 'meshd' ? ipam.store.pool.cidr : null,
      chained: false,
    });
    attachments.write(record);
    undo.push(() => attachments.remove(key));

    // A registration that timed out may still have landed: withdraw it on rollback
    // (best effort: a leftover registration goes at the runtime's next GC).
    undo.push(() => api.remove(key).catch(() => undefined));
    try {
      await api.register(registration(record, env));
    } catch (e) {
      throw agentError(e, 'registering the endpoint with the meshd agent');
    }

    const result: CniResult = {
      interfaces: [
        { name: hostIf, mac: hostMac, ...(conf.mtu ? { mtu: conf.mtu } : {}) },
        { name: env.ifname, mac: podMac, sandbox: env.netns, ...(conf.mtu ? { mtu: conf.mtu } : {}) },
      ],
      ips: addresses.map((a) => ({ address: toHostPrefix(a.address), ...(a.gateway ? { gateway: a.gateway } : {}), interface: 1 })),
      routes: routes.map((r) => {
        const gw = r.gw ?? addresses.find((a) => a.gateway && a.gateway.includes(':') === r.dst.includes(':'))?.gateway;
        return gw ? { dst: r.dst, gw } : { dst: r.dst };
      }),
      ...(dns ? { dns } : {}),
    };
    return formatResult(result, conf.cniVersion);
  } catch (e) {
    const failures = await undoAll(undo);
    if (failures.length > 0) log.push(`ADD rollback incomplete: ${failures.join('; ')}`);
    throw e;
  }
}

/** ADD after a primary plugin: adopt its interface and addresses from prevResult. */
async function addChained(env: CniEnv, conf: NetConf, api: EndpointApiClient, log: string[]): Promise<string> {
  const prev = conf.prevResult;
  if (prev === undefined) {
    throw new CniError(
      CniCode.INVALID_CONFIG,
      'MESHD_CNI_BAD_CONFIG',
      'network configuration: chainingMode "generic-veth" needs a prevResult: put a primary plugin (e.g. ptp, bridge) before meshd-cni',
    );
  }
  const interfaces = prev.interfaces ?? [];
  const podIdx = interfaces.findIndex((i) => i.name === env.ifname && (i.sandbox ?? '') !== '');
  const ips = (prev.ips ?? []).filter((ip) => podIdx < 0 || ip.interface === undefined || ip.interface === podIdx).map((ip) => ip.address);
  if (ips.length === 0) {
    throw new CniError(CniCode.INVALID_CONFIG, 'MESHD_CNI_BAD_CONFIG', `prevResult: no address for interface ${env.ifname}`);
  }
  const state = await inspectPodInterface(env.netns, env.ifname);
  if (!state) {
    throw new CniError(CniCode.INVALID_CONFIG, 'MESHD_CNI_BAD_CONFIG', `prevResult names ${env.ifname}, but ${env.netns} has no such interface`);
  }
  const hostFromPrev = interfaces.find((i) => (i.sandbox ?? '') === '' && linkExists(i.name))?.name;
  const hostIf = hostFromPrev ?? (state.peerIndex !== undefined ? interfaceByIndex(state.peerIndex) : undefined) ?? null;
  try {
    await api.health();
  } catch (e) {
    throw agentError(e, 'ADD refused');
  }
  const attachments = attachmentsOf(conf, log);
  const record = attachmentRecord(env, conf, { hostInterface: hostIf, podMac: state.mac ?? null, ips, ipam: 'none', pool: null, chained: true });
  attachments.write(record);
  try {
    await api.register(registration(record, env));
  } catch (e) {
    attachments.remove(record);
    log.push(`chained ADD: removed the attachment record after the agent refused the endpoint`);
    throw agentError(e, 'registering the endpoint with the meshd agent');
  }
  return formatResult(prev, conf.cniVersion);
}

/** Deregisters; an absent agent is not an error for teardown (it reconciles on start). */
async function deregister(api: EndpointApiClient, key: { containerId: string; ifname: string }, log: string[]): Promise<void> {
  try {
    await api.remove(key);
  } catch (e) {
    if (e instanceof EndpointApiError && (e.code === 'MESHD_CNI_API_UNREACHABLE' || e.code === 'MESHD_CNI_API_TIMEOUT')) {
      log.push(`agent not reachable while deleting ${key.containerId}/${key.ifname}; it drops the endpoint when it reconciles`);
      return;
    }
    throw agentError(e, 'removing the endpoint from the meshd agent');
  }
}

/**
 * Releases everything one attachment holds. Used by DEL and GC. Every step
 * is attempted even when an earlier one failed (the spec asks DEL to clean
 * up as much as it can); the record is removed only when all succeeded, so a
 * retried DEL still knows what to release.
 */
async function teardown(
  conf: NetConf,
  env: CniEnv,
  rec: AttachmentRecord | undefined,
  stdin: string,
  log: string[],
): Promise<void> {
  const key = { containerId: env.containerId, ifname: env.ifname };
  const failures: CniError[] = [];
  const attempt = async (step: () => unknown) => {
    try {
      await step();
    } catch (e) {
      failures.push(e instanceof CniError ? e : new CniError(CniCode.IO_FAILURE, 'MESHD_CNI_INTERNAL', e instanceof Error ? e.message : String(e)));
    }
  };
  await attempt(() => deregister(new EndpointApiClient(conf.agentSocket), key, log));
  const chained = rec?.chained ?? conf.chainingMode === 'generic-veth';
  if (!chained) {
    await attempt(() => deletePodLink(rec?.hostInterface ?? hostInterfaceName(conf.name, env.containerId, env.ifname)));
    await attempt(async () => {
      // The pool the address came from, even if the configuration's pod CIDR changed since.
      const ipam: Ipam | { kind: 'pending' } =
        rec?.ipam === 'meshd' && rec.pool !== null
          ? meshdPool(conf, parsePool(rec.pool), log)
          : ipamOrPending(conf, log);
      if (ipam.kind === 'meshd') {
        ipam.store.release(key, rec?.ips.map((ip) => ip.split('/')[0] ?? ip));
      } else if (ipam.kind === 'delegate') {
        await execPlugin(findPlugin(ipam.type, env.path), 'DEL', env, stdin);
      }
    });
  }
  const first = failures[0];
  if (first) {
    if (failures.length > 1) log.push(...failures.slice(1).map((f) => `also failed: ${f.message}`));
    throw first;
  }
  attachmentsOf(conf, log).remove(key);
}

async function cmdDel(env: CniEnv, conf: NetConf, stdin: string, log: string[]): Promise<void> {
  const rec = attachmentsOf(conf, log).read(env);
  await teardown(conf, env, rec, stdin, log);
}

function checkFailed(msg: string): CniError {
  return new CniError(CniCode.CHECK_FAILED, 'MESHD_CNI_CHECK_FAILED', `CHECK: ${msg}`);
}

async function cmdCheck(env: CniEnv, conf: NetConf, stdin: string, log: string[]): Promise<void> {
  const rec = attachmentsOf(conf, log).read(env);
  if (!rec) {
    throw new CniError(CniCode.UNKNOWN_CONTAINER, 'MESHD_CNI_UNKNOWN_CONTAINER', `CHECK: meshd-cni has no attachment for container ${env.containerId} interface ${env.ifname}`);
  }
  const bare = (cidr: string) => cidr.split('/')[0] ?? cidr;
  const recorded = rec.ips.map(bare);
  for (const ip of conf.prevResult?.ips ?? []) {
    if (!recorded.includes(bare(ip.address))) {
      throw checkFailed(`prevResult address ${ip.address} is not one meshd-cni recorded (${rec.ips.join(', ')})`);
    }
  }
  const state = await inspectPodInterface(env.netns, env.ifname);
  if (!state) throw checkFailed(`interface ${env.ifname} is missing in ${env.netns}`);
  if (!rec.chained && rec.podMac && state.mac !== rec.podMac) throw checkFailed(`${env.ifname} has MAC ${state.mac ?? 'none'}, expected ${rec.podMac}`);
  for (const ip of rec.ips) {
    const bare = ip.split('/')[0] ?? ip;
    if (!state.addresses.some((a) => a.split('/')[0] === bare)) throw checkFailed(`${env.ifname} lacks address ${ip}`);
  }
  if (rec.hostInterface && !linkExists(rec.hostInterface)) throw checkFailed(`host interface ${rec.hostInterface} is missing`);
  if (!rec.chained) {
    const ipam = ipamOf(conf, log);
    if (ipam.kind === 'meshd') {
      for (const ip of rec.ips) {
        const bare = ip.split('/')[0] ?? ip;
        if (!ipam.store.holds(env, bare)) throw checkFailed(`IPAM reservation for ${bare} is missing`);
      }
    } else {
      await execPlugin(findPlugin(ipam.type, env.path), 'CHECK', env, stdin);
    }
  }
  let ep;
  try {
    ep = await new EndpointApiClient(conf.agentSocket).get(env);
  } catch (e) {
    throw agentError(e, 'CHECK');
  }
  if (!ep) throw checkFailed(`the meshd agent does not know endpoint ${env.containerId}/${env.ifname}`);
}

async function cmdGc(conf: NetConf, env: CniEnv, log: string[]): Promise<void> {
  const valid = conf['cni.dev/valid-attachments'] ?? conf['cni.dev/attachments'] ?? [];
  const keep = new Set(valid.map((a) => `${a.containerID}/${a.ifname}`));
  const attachments = attachmentsOf(conf, log);
  const failures: string[] = [];
  for (const rec of attachments.list()) {
    if (keep.has(`${rec.containerId}/${rec.ifname}`)) continue;
    const recEnv: CniEnv = { ...env, command: 'DEL', containerId: rec.containerId, ifname: rec.ifname, netns: '' };
    const delConf = JSON.stringify({ ...conf, prevResult: undefined });
    try {
      await teardown(conf, recEnv, rec, delConf, log);
      log.push(`GC: released ${rec.containerId}/${rec.ifname}`);
    } catch (e) {
      failures.push(`${rec.containerId}/${rec.ifname}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const ipam = conf.chainingMode === 'none' ? ipamOrPending(conf, log) : undefined;
  if (ipam?.kind === 'meshd') {
    for (const r of ipam.store.list()) {
      if (keep.has(`${r.containerId}/${r.ifname}`)) continue;
      ipam.store.release(r, [r.ip]);
      log.push(`GC: released orphaned reservation ${r.ip} of ${r.containerId}/${r.ifname}`);
    }
  }
  try {
    await new EndpointApiClient(conf.agentSocket).gc({
      network: conf.name,
      valid: valid.map((a) => ({ containerId: a.containerID, ifname: a.ifname })),
    });
  } catch (e) {
    if (!(e instanceof EndpointApiError && e.code === 'MESHD_CNI_API_UNREACHABLE')) failures.push(agentError(e, 'agent GC').message);
  }
  if (failures.length > 0) {
    throw new CniError(CniCode.IO_FAILURE, 'MESHD_CNI_GC_INCOMPLETE', `GC could not release ${failures.length} attachment(s): ${failures.join('; ')}`);
  }
}

async function cmdStatus(conf: NetConf, log: string[]): Promise<void> {
  const ipam = conf.chainingMode === 'none' ? ipamOf(conf, log) : undefined; // a pool we cannot parse cannot serve ADD
  const quarantined = ipam?.kind === 'meshd' ? ipam.store.quarantined() : [];
  if (ipam?.kind === 'meshd' && quarantined.length > 0) {
    // Still serving: the pool only lacks these addresses until an operator frees them (see ipam-store.ts).
    log.push(`IPAM: ${quarantined.join(', ')} quarantined (owner unreadable); delete the address file under ${ipam.store.dir} once no pod uses it`);
  }
  try {
    await new EndpointApiClient(conf.agentSocket).health();
  } catch (e) {
    throw new CniError(CniCode.NOT_AVAILABLE, 'MESHD_CNI_AGENT_UNAVAILABLE', `meshd-cni cannot serve ADD: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function versionOf(stdin: string): string {
  try {
    const raw: unknown = JSON.parse(stdin);
    if (typeof raw === 'object' && raw !== null && 'cniVersion' in raw && typeof raw.cniVersion === 'string' && isSupportedVersion(raw.cniVersion)) {
      return raw.cniVersion;
    }
  } catch {
    // stdin is not JSON: the error JSON then speaks the latest version
  }
  return LATEST_VERSION;
}

export async function runPlugin(processEnv: NodeJS.ProcessEnv, stdin: string): Promise<PluginOutput> {
  const log: string[] = [];
  const done = (stdout: string, exitCode = 0): PluginOutput => ({
    stdout,
    stderr: log.map((l) => `meshd-cni: ${l}\n`).join(''),
    exitCode,
  });
  try {
    const env = parseEnv(processEnv);
    if (env.command === 'VERSION') {
      return done(JSON.stringify({ cniVersion: versionOf(stdin), supportedVersions: [...SUPPORTED_VERSIONS] }));
    }
    const conf = parseNetConf(stdin);
    switch (env.command) {
      case 'ADD':
        return done(await cmdAdd(env, conf, stdin, log));
      case 'DEL':
        await cmdDel(env, conf, stdin, log);
        return done('');
      case 'CHECK':
        await cmdCheck(env, conf, stdin, log);
        return done('');
      case 'GC':
        await cmdGc(conf, env, log);
        return done('');
      case 'STATUS':
        await cmdStatus(conf, log);
        return done('');
    }
  } catch (e) {
    const err =
      e instanceof CniError
        ? e
        : new CniError(CniCode.IO_FAILURE, 'MESHD_CNI_INTERNAL', e instanceof Error ? e.message : String(e));
    log.push(err.message);
    return done(JSON.stringify(err.toJSON(versionOf(stdin))), 1);
  }
}
