/**
 * The node's pod CIDR: the range meshd-cni on this node allocates pod
 * addresses from, never overlapping another node's.
 *
 * Modes (config `ipam.mode`, Cilium's names):
 * - `cluster-pool` (default in Kubernetes mode): a /`ipam.operator.clusterPoolIPv4MaskSize`
 *   block carved from `ipam.operator.clusterPoolIPv4PodCIDRList`. The API server
 *   arbitrates: a block is this node's once this agent created its
 *   MeshdPodCIDR (named from the CIDR, src/k8s/meshd-node.ts); a 409 means
 *   another node has it, and the next free block is tried. So two agents
 *   starting at once never get the same block.
 * - `kubernetes`: the first IPv4 entry of the Node object's spec.podCIDRs
 *   (kube-controller-manager's allocation); until it is set the CIDR is
 *   `pending` and retried.
 * - an explicit `ipam.podCIDR` in Kubernetes mode: claimed the same way, and
 *   refused (MESHD_IPAM_POD_CIDR_CONFLICT, naming both nodes) when another
 *   node holds it or a CIDR overlapping it.
 * Standalone mode keeps `ipam.podCIDR` as it is (staticPodCidr()).
 *
 * Restarts keep the CIDR: the node's MeshdNode (spec.podCIDRs) is read back
 * first; while the API server cannot be reached the copy in the state
 * directory (`pod-cidr.json`) is used and the claim confirmed once it
 * answers. A pending CIDR is retried every `retryMs`; listeners hear each
 * change (the agent rewrites the CNI configuration).
 *
 *   const cidrs = new PodCidrAllocator({ client, nodeName, mode: 'cluster-pool', pool: ['10.0.0.0/8'], maskSize: 24, stateFile });
 *   await cidrs.start();       // throws MESHD_IPAM_POD_CIDR_CONFLICT for a refused explicit CIDR
 *   cidrs.current();           // { state: 'ready', cidr: '10.0.0.0/24', source: 'cluster-pool', … }
 *   cidrs.stop();
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { writeAtomic } from '../cni/installer.js';
import { KubeApiError, type Json, type KubeClient } from '../k8s/client.js';
import { itemsOf } from '../k8s/list.js';
import { MESHD_NODES_PATH, MESHD_POD_CIDRS_PATH, meshdPodCidrBody, MeshdPodCidrSchema, parseMeshdNode, podCidrObjectName, type MeshdPodCidr, type PodCidrSource } from '../k8s/meshd-node.js';
import { MeshdError, type ErrorKind } from '../util/errors.js';
import { errno } from '../util/fs-errors.js';
import type { Logger } from '../util/log.js';

// ---- IPv4 CIDR arithmetic ------------------------------------------------------------------

export interface Cidr4 {
  /** The network address as an unsigned 32-bit number. */
  base: number;
  bits: number;
}

/** `a.b.c.d/n` with the host bits zero, or undefined. */
export function parseCidr4(s: string): Cidr4 | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (octets.some((o) => o > 255) || bits > 32) return undefined;
  const base = octets.reduce((acc, o) => acc * 256 + o, 0);
  if (base % 2 ** (32 - bits) !== 0) return undefined;
  return { base, bits };
}

export function formatCidr4(c: Cidr4): string {
  const o = [24, 16, 8, 0].map((s) => Math.floor(c.base / 2 ** s) % 256);
  return `${o.join('.')}/${c.bits}`;
}

const size = (c: Cidr4): number => 2 ** (32 - c.bits);

export function overlaps(a: Cidr4, b: Cidr4): boolean {
  return a.base < b.base + size(b) && b.base < a.base + size(a);
}

/** The /maskSize blocks of `pool`, lowest first. */
export function* carve(pool: Cidr4, maskSize: number): Generator<Cidr4> {
  if (maskSize < pool.bits || maskSize > 32) return;
  const step = 2 ** (32 - maskSize);
  for (let b = pool.base; b < pool.base + size(pool); b += step) yield { base: b, bits: maskSize };
}

/**
 * The first block of the pools that overlaps none of `taken` (blocks of the
 * pools' size match exactly; any other CIDR a node holds rules out what it
 * covers). Undefined when every block is taken.
 */
export function firstFree(pools: readonly Cidr4[], maskSize: number, taken: readonly Cidr4[]): Cidr4 | undefined {
  for (const pool of pools) {
    for (const block of carve(pool, maskSize)) {
      if (!taken.some((t) => overlaps(t, block))) return block;
    }
  }
  return undefined;
}

// ---- errors and status -------------------------------------------------------------------------

export type PodCidrErrorCode =
  /** The CIDR wanted (explicit or from the Node object) is held by another node, or overlaps one it holds. */
  | 'MESHD_IPAM_POD_CIDR_CONFLICT'
  /** Every block of the cluster pool is held by some node. */
  | 'MESHD_IPAM_POOL_EXHAUSTED'
  /** A pool entry is not a canonical IPv4 CIDR, or the mask size does not fit inside it. */
  | 'MESHD_IPAM_POOL_INVALID'
  /** The Node object has no IPv4 pod CIDR yet (ipam.mode=kubernetes). */
  | 'MESHD_IPAM_POD_CIDR_PENDING'
  /** The API server could not be reached or refused the request. */
  | 'MESHD_IPAM_API_FAILED';

const KIND: Record<PodCidrErrorCode, ErrorKind> = {
  MESHD_IPAM_POD_CIDR_CONFLICT: 'conflict',
  MESHD_IPAM_POOL_EXHAUSTED: 'unavailable',
  MESHD_IPAM_POOL_INVALID: 'invalid',
  MESHD_IPAM_POD_CIDR_PENDING: 'unavailable',
  MESHD_IPAM_API_FAILED: 'unavailable',
};

export class PodCidrError extends MeshdError {
  declare readonly code: PodCidrErrorCode;
  constructor(
    code: PodCidrErrorCode,
    message: string,
    /** MESHD_IPAM_POD_CIDR_CONFLICT: the node holding the CIDR, and what it holds. */
    readonly holder?: { node: string; cidr: string },
    opts: { cause?: unknown } = {},
  ) {
    super(code, message, { kind: KIND[code], ...opts });
  }
}

export type PodCidrMode = 'standalone' | 'cluster-pool' | 'kubernetes';

/** The node's pod CIDR as `meshd status` shows it. */
export interface PodCidrStatus {
  mode: PodCidrMode;
  state: 'ready' | 'pending';
  cidr: string | null;
  /** Where it came from: the config file (standalone), the pool, the Node object, an explicit key. */
  source: PodCidrSource | 'config' | null;
  /** ready: how it was obtained (new claim, read back, local state); pending: why not yet. */
  detail: string;
  /** pending: the code of what stands in the way. */
  code: PodCidrErrorCode | null;
}

/** What the agent needs: the CIDR now, and word when it changes. */
export interface PodCidrProvider {
  current(): PodCidrStatus;
  onChange(listener: (s: PodCidrStatus) => void): () => void;
  /** Re-asserts the claim of the CIDR in use (called with each heartbeat); never throws. */
  confirm?(): Promise<void>;
}

/** Standalone mode: the configured CIDR, fixed. */
export function staticPodCidr(cidr: string): PodCidrProvider {
  const s: PodCidrStatus = { mode: 'standalone', state: 'ready', cidr, source: 'config', detail: 'ipam.podCIDR', code: null };
  return { current: () => s, onChange: () => () => undefined };
}

// ---- the allocator ----------------------------------------------------------------------------

export interface PodCidrAllocatorOptions {
  client: KubeClient;
  nodeName: string;
  mode: 'cluster-pool' | 'kubernetes';
  /** ipam.podCIDR when set explicitly: wins over the mode, claimed the same way. */
  explicit?: string | undefined;
  /** ipam.operator.clusterPoolIPv4PodCIDRList */
  pool: readonly string[];
  /** ipam.operator.clusterPoolIPv4MaskSize */
  maskSize: number;
  /** The local copy (`<stateDir>/pod-cidr.json`). */
  stateFile: string;
  /** How often a pending CIDR (or an unconfirmed local one) is tried again. */
  retryMs?: number;
  /** How long start() retries an API server that does not answer before the CIDR is reported pending (default 5 s). */
  startWaitMs?: number;
  log?: Logger;
}

const StateFile = z.object({ node: z.string(), cidr: z.string(), source: z.enum(['cluster-pool', 'kubernetes', 'explicit']) });
type LocalState = z.infer<typeof StateFile>;

const NodeSpecSchema = z.object({ spec: z.object({ podCIDR: z.string().optional(), podCIDRs: z.array(z.string()).optional() }).default({}) });

const isStatus = (e: unknown, ...s: number[]): boolean => e instanceof KubeApiError && e.status !== undefined && s.includes(e.status);

export class PodCidrAllocator implements PodCidrProvider {
  private status: PodCidrStatus;
  private readonly listeners = new Set<(s: PodCidrStatus) => void>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  /** The CIDR is in use from local state and its claim not yet confirmed by the API server. */
  private unconfirmed = false;
  private readonly pools: Cidr4[];
  /** Every claim this instance made or confirmed, for tests. */
  readonly claims: string[] = [];

  constructor(private readonly o: PodCidrAllocatorOptions) {
    this.status = { mode: o.mode, state: 'pending', cidr: null, source: null, detail: 'not tried yet', code: 'MESHD_IPAM_POD_CIDR_PENDING' };
    this.pools = o.pool.map((p) => {
      const c = parseCidr4(p);
      if (!c) throw new PodCidrError('MESHD_IPAM_POOL_INVALID', `ipam.operator.clusterPoolIPv4PodCIDRList: "${p}" is not an IPv4 CIDR with its host bits zero`);
      if (o.maskSize < c.bits) throw new PodCidrError('MESHD_IPAM_POOL_INVALID', `ipam.operator.clusterPoolIPv4MaskSize ${o.maskSize} is wider than the pool ${p}`);
      return c;
    });
    if (o.explicit !== undefined && !parseCidr4(o.explicit)) throw new PodCidrError('MESHD_IPAM_POOL_INVALID', `ipam.podCIDR: "${o.explicit}" is not an IPv4 CIDR with its host bits zero`);
  }

  current(): PodCidrStatus {
    return this.status;
  }

  onChange(listener: (s: PodCidrStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The first attempt. Resolves with the CIDR ready, or pending (retried in the background).
   * Throws MESHD_IPAM_POD_CIDR_CONFLICT: an explicit or Node-given CIDR another node holds is never taken.
   */
  async start(): Promise<void> {
    // A moment's grace for an API server that is just not ready (a CRD registered a moment ago answers 429 while
    // its storage initialises): retried briefly before the CIDR is reported pending.
    const deadline = Date.now() + (this.o.startWaitMs ?? 5_000);
    for (let delay = 100; ; delay = Math.min(delay * 2, 1_000)) {
      await this.attempt(true);
      if (this.status.state === 'ready' || this.status.code !== 'MESHD_IPAM_API_FAILED' || Date.now() + delay > deadline) break;
      await sleep(delay);
    }
    this.timer = setInterval(() => {
      if (this.status.state === 'ready' && !this.unconfirmed) return;
      this.running = this.running.then(() => this.attempt(false)).catch((e: unknown) => this.o.log?.warn('pod CIDR attempt failed', { err: e }));
    }, this.o.retryMs ?? 5_000);
    this.timer.unref();
  }

  /**
   * The claim of the CIDR in use still names this node: one GET, and a create when it is gone (deleted by
   * hand, or by the housekeeping while this node had no MeshdNode yet). Held by another node: reported.
   */
  async confirm(): Promise<void> {
    const cidr = this.status.cidr;
    if (this.stopped || this.status.state !== 'ready' || cidr === null || this.unconfirmed) return;
    try {
      const held = await this.readClaim(cidr);
      if (held?.spec.node === this.o.nodeName) return;
      if (held === undefined && (await this.claim(cidr))) {
        this.o.log?.warn('pod CIDR claim was gone; claimed again', { cidr });
        return;
      }
      const holder = held ?? (await this.readClaim(cidr));
      const e = new PodCidrError('MESHD_IPAM_POD_CIDR_CONFLICT', `pod CIDR ${cidr} in use by node ${this.o.nodeName} is claimed by node ${holder?.spec.node ?? '(unknown)'}`, holder ? { node: holder.spec.node, cidr } : undefined);
      this.status = { ...this.status, detail: e.message, code: e.code };
      this.o.log?.error('the pod CIDR in use is held by another node', { code: e.code, detail: e.message });
    } catch (e) {
      this.o.log?.debug('pod CIDR claim not confirmed now', { err: e });
    }
  }

  /** Stops retrying; the claim stays (it is the node's until its MeshdNode is removed). Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  private set(s: Omit<PodCidrStatus, 'mode'>): void {
    const next: PodCidrStatus = { mode: this.o.mode, ...s };
    const changed = next.state !== this.status.state || next.cidr !== this.status.cidr || next.source !== this.status.source;
    this.status = next;
    if (!changed) return;
    if (next.state === 'ready') this.o.log?.info('pod CIDR', { cidr: next.cidr, source: next.source, detail: next.detail });
    else this.o.log?.warn('pod CIDR pending', { code: next.code, detail: next.detail });
    for (const l of this.listeners) l(next);
  }

  private pending(e: PodCidrError): void {
    // A CIDR already in use stays in use: a later failure (the API server away) does not take it back. One not yet
    // confirmed that turns out to be held by another node is reported (status and log) until an operator resolves it.
    if (this.status.state === 'ready') {
      if (this.unconfirmed && e.code === 'MESHD_IPAM_POD_CIDR_CONFLICT') {
        this.status = { ...this.status, detail: `in use unconfirmed: ${e.message}`, code: e.code };
        this.o.log?.error('the pod CIDR in use is held by another node', { code: e.code, detail: e.message });
      }
      return;
    }
    this.set({ state: 'pending', cidr: null, source: null, detail: e.message, code: e.code });
  }

  private async attempt(first: boolean): Promise<void> {
    if (this.stopped) return;
    const local = this.readState();
    try {
      const r = await this.resolve(local);
      this.unconfirmed = false;
      this.writeState({ node: this.o.nodeName, cidr: r.cidr, source: r.source });
      this.set({ state: 'ready', cidr: r.cidr, source: r.source, detail: r.detail, code: null });
    } catch (e) {
      // The API server is away: an explicit CIDR, else the copy in the state directory, keeps the node's CIDR; the claim is confirmed when it answers.
      const fallback = this.o.explicit !== undefined ? { cidr: this.o.explicit, source: 'explicit' as const, from: 'ipam.podCIDR' } : local ? { ...local, from: 'local state' } : undefined;
      if (e instanceof PodCidrError && e.code === 'MESHD_IPAM_API_FAILED' && fallback && this.status.state !== 'ready') {
        this.unconfirmed = true;
        this.set({ state: 'ready', cidr: fallback.cidr, source: fallback.source, detail: `from ${fallback.from}; the API server cannot be reached, the claim is confirmed when it answers`, code: null });
        return;
      }
      if (!(e instanceof PodCidrError)) throw e;
      if (first && (e.code === 'MESHD_IPAM_POD_CIDR_CONFLICT' || e.code === 'MESHD_IPAM_POOL_INVALID')) throw e;
      this.pending(e);
    }
  }

  /** One pass: what this node's CIDR is, claimed in the API server. */
  private async resolve(local: LocalState | undefined): Promise<{ cidr: string; source: PodCidrSource; detail: string }> {
    const name = this.o.nodeName;
    const own = await this.api(async () => {
      try {
        return parseMeshdNode(await this.o.client.getJson(`${MESHD_NODES_PATH}/${name}`), `MeshdNode ${name}`);
      } catch (e) {
        if (isStatus(e, 404)) return undefined;
        throw e;
      }
    });
    const claims = await this.listClaims();
    const others = claims.filter((c) => c.spec.node !== name);
    if (this.o.explicit !== undefined) {
      await this.claimOrRefuse(this.o.explicit, others, 'ipam.podCIDR');
      await this.releaseOthers(claims, this.o.explicit);
      return { cidr: this.o.explicit, source: 'explicit', detail: 'ipam.podCIDR' };
    }
    if (this.o.mode === 'kubernetes') {
      const cidr = await this.nodePodCidr();
      await this.claimOrRefuse(cidr, others, `Node ${name} spec.podCIDRs`);
      await this.releaseOthers(claims, cidr);
      return { cidr, source: 'kubernetes', detail: `Node ${name} spec.podCIDRs` };
    }
    // cluster-pool: what the node had (its MeshdNode, else the local copy), if it is still a block of the pool and still ours.
    const had = [
      { cidr: own?.spec.podCIDRSource === 'cluster-pool' ? own.spec.podCIDRs[0] : undefined, from: 'read back from the MeshdNode' },
      { cidr: local?.source === 'cluster-pool' ? local.cidr : undefined, from: 'read back from local state' },
    ];
    for (const h of had) {
      const c = h.cidr === undefined ? undefined : parseCidr4(h.cidr);
      if (!h.cidr || !c || c.bits !== this.o.maskSize || !this.pools.some((p) => overlaps(p, c) && p.bits <= c.bits)) continue;
      if (others.some((o) => overlapsCidr(o.spec.cidr, c))) continue;
      if (await this.claim(h.cidr)) {
        await this.releaseOthers(claims, h.cidr);
        return { cidr: h.cidr, source: 'cluster-pool', detail: h.from };
      }
    }
    const taken = others.flatMap((o) => parseCidr4(o.spec.cidr) ?? []);
    for (;;) {
      const block = firstFree(this.pools, this.o.maskSize, taken);
      if (!block) throw new PodCidrError('MESHD_IPAM_POOL_EXHAUSTED', `every /${this.o.maskSize} of ipam.operator.clusterPoolIPv4PodCIDRList (${this.o.pool.join(', ')}) is held by a node`);
      const cidr = formatCidr4(block);
      if (await this.claim(cidr)) {
        await this.releaseOthers(claims, cidr);
        return { cidr, source: 'cluster-pool', detail: 'allocated from the cluster pool' };
      }
      taken.push(block); // another node won it
    }
  }

  /** Runs an API call; a failure to reach the server becomes MESHD_IPAM_API_FAILED. */
  private async api<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof MeshdError && !(e instanceof KubeApiError)) throw e;
      throw new PodCidrError('MESHD_IPAM_API_FAILED', `pod CIDR: ${e instanceof Error ? e.message : String(e)}`, undefined, { cause: e });
    }
  }

  private listClaims(): Promise<MeshdPodCidr[]> {
    return this.api(async () => {
      // A claim that does not parse cannot be honoured or taken; it is skipped (and its name stays taken on create).
      return itemsOf(MeshdPodCidrSchema, await this.o.client.getJson(MESHD_POD_CIDRS_PATH), MESHD_POD_CIDRS_PATH);
    });
  }

  /** The Node object's first IPv4 pod CIDR; MESHD_IPAM_POD_CIDR_PENDING while it has none. */
  private async nodePodCidr(): Promise<string> {
    const name = this.o.nodeName;
    const raw = await this.api(async () => {
      try {
        return await this.o.client.getJson(`/api/v1/nodes/${name}`);
      } catch (e) {
        if (isStatus(e, 404)) return undefined;
        throw e;
      }
    });
    if (raw === undefined) throw new PodCidrError('MESHD_IPAM_POD_CIDR_PENDING', `ipam.mode=kubernetes: waiting for the Node object ${name}`);
    const n = NodeSpecSchema.safeParse(raw);
    if (!n.success) throw new PodCidrError('MESHD_IPAM_API_FAILED', `Node ${name}: spec.podCIDRs is not a list of strings`);
    const all = n.data.spec.podCIDRs ?? (n.data.spec.podCIDR ? [n.data.spec.podCIDR] : []);
    const v4 = all.find((c) => parseCidr4(c) !== undefined);
    if (!v4) throw new PodCidrError('MESHD_IPAM_POD_CIDR_PENDING', `ipam.mode=kubernetes: waiting for Node ${name} spec.podCIDRs to hold an IPv4 CIDR (it has ${all.length === 0 ? 'none' : all.join(', ')})`);
    return v4;
  }

  /** Claims `cidr` for this node, or throws MESHD_IPAM_POD_CIDR_CONFLICT naming the node that holds it (or an overlapping CIDR). */
  private async claimOrRefuse(cidr: string, others: readonly MeshdPodCidr[], what: string): Promise<void> {
    const c = parseCidr4(cidr);
    const clash = others.find((o) => c !== undefined && overlapsCidr(o.spec.cidr, c));
    if (!clash && (await this.claim(cidr))) return;
    const holder = clash ?? (await this.readClaim(cidr));
    const node = holder?.spec.node ?? '(unknown)';
    const held = holder?.spec.cidr ?? cidr;
    throw new PodCidrError(
      'MESHD_IPAM_POD_CIDR_CONFLICT',
      `${what} ${cidr} of node ${this.o.nodeName} is refused: node ${node} holds ${held === cidr ? 'it' : `the overlapping ${held}`} (MeshdPodCIDR ${podCidrObjectName(held)})`,
      { node, cidr: held },
    );
  }

  private async readClaim(cidr: string): Promise<MeshdPodCidr | undefined> {
    return this.api(async () => {
      try {
        // A claim that does not fit the schema names no node: it is nobody's to hand over.
        const r = MeshdPodCidrSchema.safeParse(await this.o.client.getJson(`${MESHD_POD_CIDRS_PATH}/${podCidrObjectName(cidr)}`));
        return r.success ? r.data : undefined;
      } catch (e) {
        if (isStatus(e, 404)) return undefined;
        throw e;
      }
    });
  }

  /** Create-if-absent of the claim: true when it is (now or already) this node's, false when another node's. */
  private async claim(cidr: string): Promise<boolean> {
    const created = await this.api(async () => {
      try {
        await this.o.client.send('POST', MESHD_POD_CIDRS_PATH, meshdPodCidrBody(cidr, this.o.nodeName));
        return true;
      } catch (e) {
        if (isStatus(e, 409)) return false;
        throw e;
      }
    });
    const mine = created || (await this.readClaim(cidr))?.spec.node === this.o.nodeName;
    if (mine) this.claims.push(cidr);
    return mine;
  }

  /** Claims this node holds besides the one it uses (a changed mode or pool): given back. */
  private async releaseOthers(claims: readonly MeshdPodCidr[], keep: string): Promise<void> {
    for (const c of claims) {
      if (c.spec.node !== this.o.nodeName || c.metadata.name === podCidrObjectName(keep)) continue;
      await this.api(async () => {
        try {
          await this.o.client.send('DELETE', `${MESHD_POD_CIDRS_PATH}/${c.metadata.name}`, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion: c.metadata.resourceVersion } });
        } catch (e) {
          if (!isStatus(e, 404, 409)) throw e;
        }
      });
      this.o.log?.info('pod CIDR claim released', { cidr: c.spec.cidr });
    }
  }

  private readState(): LocalState | undefined {
    let text: string;
    try {
      text = readFileSync(this.o.stateFile, 'utf8');
    } catch (e) {
      if (errno(e) !== 'ENOENT') this.o.log?.warn('pod CIDR state unreadable; ignored', { file: this.o.stateFile, err: e });
      return undefined;
    }
    let raw: Json;
    try {
      raw = JSON.parse(text);
    } catch {
      raw = undefined;
    }
    const r = StateFile.safeParse(raw);
    if (!r.success || r.data.node !== this.o.nodeName || !parseCidr4(r.data.cidr)) {
      this.o.log?.warn('pod CIDR state does not fit; ignored', { file: this.o.stateFile });
      return undefined;
    }
    return r.data;
  }

  private writeState(s: LocalState): void {
    const text = `${JSON.stringify(s)}\n`;
    try {
      if (readFileSync(this.o.stateFile, 'utf8') === text) return;
    } catch {
      // missing: written below
    }
    mkdirSync(dirname(this.o.stateFile), { recursive: true, mode: 0o700 });
    writeAtomic(this.o.stateFile, text, 0o600);
  }
}

function overlapsCidr(s: string, c: Cidr4): boolean {
  const o = parseCidr4(s);
  return o !== undefined && overlaps(o, c);
}
