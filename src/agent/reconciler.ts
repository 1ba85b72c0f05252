/**
 * Engine → kernel and Envoy. After every change the agent calls
 * `reconcile()`, which writes what the policy engine computed to the
 * endpoints' eBPF maps, the ipcache, the socket LB and the node's Envoy, in
 * the one order that never redirects to a listener Envoy lacks and never
 * leaves a redirect without its chain:
 *
 *   1. endpoints whose new policy adds no redirect are written first (a
 *      removed redirect leaves the datapath before its chain leaves Envoy);
 *   2. Envoy gets the new configuration and ACKs it;
 *   3. the endpoints that add redirects are written.
 *
 * A NACK (or an ACK that never comes) stops at 2: those endpoints keep their
 * previous datapath policy and are listed as pending with the reason, and the
 * next reconcile retries them (the agent runs one when the proxy reports a
 * late ACK). A datapath write that fails keeps that
 * endpoint's previous policy the same way.
 *
 * Not re-entrant: the agent runs it inside its serial queue.
 */
import type { L7FlowRecord } from '../proxy/access-log-server.js';
import type { z } from 'zod';
import type { ProxyStatus } from '../api/proxy.js';
import type { EndpointManager } from '../datapath/endpoint/endpoint-manager.js';
import { policyMapState, type PolicyMapState } from '../datapath/endpoint/policy-map-state.js';
import type { ServiceManager } from '../datapath/lb/service-manager.js';
import type { PolicyEngine } from '../policy/index.js';
import type { Direction, IpcacheEntry, L7Kind } from '../policy/types.js';
import type { L7Endpoint, Redirect, TranslateOutput } from '../proxy/translate.js';
import { isMeshdError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { SecretData } from '../proxy/sds.js';

/** What the agent needs of the L7 proxy (src/proxy/proxy-manager.ts implements it). */
export interface L7Proxy {
  proxyPort(kind: L7Kind, direction: Direction): number;
  apply(input: { endpoints: L7Endpoint[]; identityIps: ReadonlyMap<number, readonly string[]>; secrets?: SecretData }): Promise<{
    version: string;
    redirects: Redirect[];
    unsupported: TranslateOutput['unsupported'];
    /** Missing or broken TLS Secrets that held back only what names them (see ProxyApplyResult). */
    secretProblems?: Array<{ code: string; message: string }>;
  }>;
  status(): z.input<typeof ProxyStatus>;
  stop(): Promise<void>;
  /** Planned replacement of the node's Envoys (meshd proxy restart). */
  restart?(): Promise<{ replaced: number; instances: string[] }>;
  /** Calls `fn` when Envoy ACKs a configuration after apply() gave up waiting for it (ACK timeout). */
  onAccepted?(fn: (version: string) => void): () => void;
  /** Calls `fn` with the proxy's HTTP access-log records as they arrive, in batches (the flow observer's L7 flows). */
  onAccessLog?(fn: (rs: readonly L7FlowRecord[]) => void): () => void;
}

/** The outcome of the last proxy update, as `meshd status` shows it. */
export interface ProxyRecord {
  /** The configuration version Envoy last ACKed. */
  version: string;
  /** Why the last update was not applied (NACK, timeout), or null. */
  error: string | null;
  /** The error's code when it is a MeshdError (e.g. the proxy's NACK or timeout code), or null. */
  errorCode: string | null;
  at: string;
}

/** A problem found while reconciling, for the agent's problem list. */
export interface ReconcileProblem {
  endpoint: string;
  port: number;
  message: string;
}

/** Proxy port per L7 kind and direction; 0 (no listener: the datapath fails closed) without a proxy. */
export function proxyPorts(proxy: L7Proxy | null): (kind: L7Kind, direction: Direction) => number {
  return (kind, direction) => (proxy ? proxy.proxyPort(kind, direction) : 0);
}

export interface ReconcilerDeps {
  engine: PolicyEngine;
  endpoints: EndpointManager;
  services: ServiceManager | null;
  proxy: L7Proxy | null;
  /** The datapath's proxy port per kind when it is not only the L7 proxy's (DNS has its own proxy). */
  proxyPort?: (kind: L7Kind, direction: Direction) => number;
  log: Logger;
  onConflict(p: ReconcileProblem): void;
  /** Secret data for TLS interception (agent/secret-subscriber.ts). */
  secrets?: () => SecretData;
  /** hostFirewall.enabled: registers the host endpoint in the datapath (src/datapath/host); returns ids whose policy must be written. */
  hostEndpoint?: { sync(): Promise<string[]> };
}

export class Reconciler {
  /** Endpoints whose latest policy is not in the kernel yet, with the reason (datapath refused it, or the proxy NACKed). */
  readonly pending = new Map<string, string>();
  private last: ProxyRecord | null = null;
  /** identityIps() of the last ipcache list it was asked for (the engine hands out the same list until it changes). */
  private identityIpsMemo: { of: readonly IpcacheEntry[]; ips: Map<number, string[]> } | null = null;

  constructor(private readonly d: ReconcilerDeps) {}

  get lastProxy(): ProxyRecord | null {
    return this.last;
  }

  /**
   * Called after every reconcile, written or not (the DNS proxy's worker takes its policy mirror from
   * here: it judges with what the kernel enforces). Must not throw.
   */
  afterReconcile: (() => Promise<void>) | null = null;

  async reconcile(): Promise<void> {
    try {
      await this.write();
    } finally {
      await this.afterReconcile?.();
    }
  }

  private async write(): Promise<void> {
    const { engine, endpoints, log } = this.d;
    for (const p of engine.flush()) {
      this.pending.set(p.endpointId, 'changed');
      for (const e of [...p.ingress.entries, ...p.egress.entries]) {
        if (!e.conflict) continue;
        log.error('policy conflict; the port is denied', { endpoint: p.endpointId, identity: e.remoteIdentity, port: e.port, policies: e.derivedFrom, problem: e.conflict });
        this.d.onConflict({ endpoint: p.endpointId, port: e.port, message: e.conflict });
      }
    }
    for (const id of (await this.d.hostEndpoint?.sync()) ?? []) this.pending.set(id, 'changed');
    // Computed once per reconcile: the datapath and the proxy's RBAC see the same prefixes.
    const ipcache = engine.ipcache();
    try {
      endpoints.syncIpcache(ipcache);
    } catch (e) {
      log.error('ipcache not updated; the previous one stays', { err: e });
    }
    this.d.services?.sync();

    const addsRedirect = new Set<string>();
    const proxyPort = this.d.proxyPort ?? proxyPorts(this.d.proxy);
    for (const [id] of this.pending) {
      const policy = engine.endpointPolicy(id);
      const state = endpoints.endpoint(id);
      if (!policy || !state) continue;
      const have = redirectRows(state.entries);
      if ([...redirectRows(policyMapState(policy, { proxyPort }))].some((r) => !have.has(r))) addsRedirect.add(id);
    }
    // (1) Removals and unchanged redirects first.
    await this.writePending((id) => !addsRedirect.has(id));

    if (this.d.proxy) {
      const l7: L7Endpoint[] = [];
      for (const ep of endpoints.endpoints()) {
        const policy = engine.endpointPolicy(ep.endpointId);
        if (policy) l7.push({ policy, ips: ep.ips });
      }
      // (2) Envoy, waiting for its ACK.
      try {
        const r = await this.d.proxy.apply({ endpoints: l7, identityIps: this.identityIps(ipcache), ...(this.d.secrets ? { secrets: this.d.secrets() } : {}) });
        // A bad TLS Secret held back only what names it; it still shows in `meshd status` until fixed.
        const secretProblems = r.secretProblems ?? [];
        this.last = { version: r.version, error: secretProblems.map((p) => p.message).join('; ') || null, errorCode: secretProblems[0]?.code ?? null, at: new Date().toISOString() };
        for (const p of secretProblems) log.error('TLS interception Secret not usable; its last good version stays, or the chains naming it are left out', { code: p.code, problem: p.message });
        for (const u of r.unsupported.filter((x) => x.kind !== 'dns')) log.warn('L7 rules of this kind are not enforced by the proxy; those flows stay denied', { endpoint: u.endpointId, direction: u.direction, kind: u.kind, policies: u.derivedFrom });
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        this.last = { version: this.last?.version ?? '', error: why, errorCode: isMeshdError(e) ? e.code : null, at: new Date().toISOString() };
        log.error('proxy configuration rejected; previous proxy configuration and redirects stay', { err: e });
        // NACK: the endpoints that would redirect to the rejected listeners keep their previous policy.
        for (const id of addsRedirect) if (this.pending.has(id)) this.pending.set(id, `waiting for the proxy: ${why}`);
        return;
      }
    }
    // (3) Additions, now that Envoy has their listeners.
    await this.writePending(() => true);
  }

  /** Writes the pending endpoints that `which` selects; a refusal keeps that endpoint's previous policy. */
  private async writePending(which: (id: string) => boolean): Promise<void> {
    const { engine, endpoints, log } = this.d;
    for (const [id] of [...this.pending]) {
      if (!which(id)) continue;
      const policy = engine.endpointPolicy(id);
      const state = endpoints.endpoint(id);
      if (!policy || !state) {
        this.pending.delete(id);
        continue;
      }
      try {
        if (state.identity !== policy.identity) await endpoints.addEndpoint({ endpointId: id, ifname: state.ifname, identity: policy.identity, ips: state.ips });
        endpoints.updatePolicy(policy);
        this.pending.delete(id);
      } catch (e) {
        this.pending.set(id, e instanceof Error ? e.message : String(e));
        log.error('endpoint policy not written; the previous one stays', { endpoint: id, identity: policy.identity, err: e });
      }
    }
  }

  /** The prefixes of each identity (what the proxy's RBAC matches remote peers by). */
  identityIps(ipcache: readonly IpcacheEntry[] = this.d.engine.ipcache()): ReadonlyMap<number, readonly string[]> {
    if (this.identityIpsMemo?.of === ipcache) return this.identityIpsMemo.ips;
    const out = new Map<number, string[]>();
    for (const e of ipcache) {
      const list = out.get(e.identity) ?? [];
      list.push(e.prefix);
      out.set(e.identity, list);
    }
    this.identityIpsMemo = { of: ipcache, ips: out };
    return out;
  }
}

/** The redirect rows of a map state, as comparable strings. */
function redirectRows(state: PolicyMapState): Set<string> {
  const out = new Set<string>();
  for (const [id, e] of state) if (e.value.verdict === 'REDIRECT') out.add(`${id}->${e.value.proxyPort}`);
  return out;
}
