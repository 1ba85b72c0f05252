/**
 * How new connections find an Envoy when there are several (replicas, or the
 * old and the new one during a planned replacement).
 *
 * Every instance binds each proxy port with SO_REUSEPORT, so the kernel keeps
 * one reuseport group per port (and family) holding every instance's
 * listener sockets (one per Envoy worker). The agent decides which of them
 * take new connections: `ProxySteering` takes the listening sockets of the
 * live instances out of the Envoy processes (pidfd_getfd), puts them into
 * the SOCKHASH `meshd_steer_socks` under a fresh generation, and switches the
 * port to that generation with one update of `meshd_steer_ports`
 * (bpf/lib/steer.h). The SK_REUSEPORT program `meshd_proxy_select`
 * (bpf/steer.c), attached to each group, selects from that set for every new
 * connection — the tc redirect's assigned socket included, since the kernel
 * selects again within the group of an assigned listener.
 *
 * - a new instance takes every new connection from the moment the agent
 *   counts it live (ready, ACKed, listeners bound), before the one it
 *   replaces starts draining; the draining one gets none;
 * - a crashed instance's sockets leave the SOCKHASH as the kernel closes
 *   them, and the agent rewrites the set when it sees the exit;
 * - no entry for a port (steering unavailable, a port whose listener is
 *   newer than the last switch): the kernel's own lookup and reuseport hash,
 *   as before; `status()` says which path is live and counts both;
 * - with `net.ipv4.tcp_migrate_req=1` the connections that were queued on a
 *   closing listener (SYN received or handshake done, not yet accepted) move
 *   to another listener of the group instead of being reset.
 *
 *   await enableRequestMigration();          // once, in the namespace the listeners live in
 *   const out = withReusePort(translated);    // every listener: enable_reuse_port
 *   const s = await ProxySteering.open({ pinDir });
 *   s.update([{ id: 'e1', pid }], [10001, 10002]);   // on every change of the live set
 *   s.status();   // { path: 'socket-map', ports: […], counters: {…} }
 */

import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { type BpfObjectHandle, BpfMap, native, openObject, u32 } from '../../native/index.js';
import { SteerStat } from '../datapath/abi.js';
import { SteerKey, SteerPort } from '../datapath/maps.js';
import { perCpuCounters } from '../datapath/per-cpu.js';
import { MeshdError } from '../util/errors.js';
import { bpfObjectPath } from '../util/paths.js';

const MIGRATE_REQ = '/proc/sys/net/ipv4/tcp_migrate_req';

/**
 * Sets net.ipv4.tcp_migrate_req=1 in this network namespace (idempotent).
 * Returns false when the kernel has no such setting (before 5.14): a closing
 * listener then resets what was queued on it.
 */
export function enableRequestMigration(): boolean {
  try {
    if (readFileSync(MIGRATE_REQ, 'utf8').trim() === '1') return true;
    writeFileSync(MIGRATE_REQ, '1');
    return true;
  } catch {
    return false;
  }
}

/** The listeners with SO_REUSEPORT set explicitly (Envoy's default has changed across versions). */
export function withReusePort<T extends object>(listeners: readonly T[]): Array<T & { enable_reuse_port: true }> {
  return listeners.map((l) => ({ ...l, enable_reuse_port: true as const }));
}

export class SteeringError extends MeshdError {
  constructor(message: string, cause?: unknown) {
    super('MESHD_PROXY_STEERING_UNAVAILABLE', message, { kind: 'unavailable', cause });
  }
}

/** A process's listening TCP sockets on `ports`: its descriptor number, port and family (from /proc). */
export function listeningSockets(pid: number, ports: ReadonlySet<number>): Array<{ fd: number; port: number; family: 4 | 6 }> {
  const byInode = new Map<string, { port: number; family: 4 | 6 }>();
  for (const [file, family] of [['tcp', 4], ['tcp6', 6]] as const) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
      const f = line.trim().split(/\s+/);
      const local = f[1];
      const inode = f[9];
      if (f[3] !== '0A' || !local || !inode) continue;
      const port = Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
      if (ports.has(port)) byInode.set(inode, { port, family });
    }
  }
  const out: Array<{ fd: number; port: number; family: 4 | 6 }> = [];
  if (byInode.size === 0) return out;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const name of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${name}`);
    } catch {
      continue;
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    const hit = m?.[1] ? byInode.get(m[1]) : undefined;
    if (hit) out.push({ fd: Number(name), ...hit });
  }
  return out;
}

export interface SteeringPortStatus {
  port: number;
  family: 4 | 6;
  /** Listening sockets new connections are steered to (every worker of every live instance). */
  sockets: number;
  /** The instances those sockets belong to. */
  instances: string[];
}

export interface SteeringStatus {
  /**
   * `socket-map`: new connections go to the sockets the agent put in the map;
   * `socket-lookup`: the map is not in use (unavailable, or nothing to steer
   * yet), the kernel's listener lookup and reuseport hash decide.
   */
  path: 'socket-map' | 'socket-lookup';
  ports: SteeringPortStatus[];
  /** New connections since the maps were created: tc from the map / by lookup; reuseport selections by the map / by hash. */
  counters: { tcMap: number; tcLookup: number; selected: number; unsteered: number };
  /** Why the map is not in use, when it is not. */
  error: string | null;
}

function steerKey(port: number, family: 4 | 6, gen: number, slot: number): Buffer {
  return SteerKey.encode({ port, family, gen, slot });
}

export interface SteeringInstance {
  id: string;
  pid: number;
}

/**
 * The agent's hand on the steering maps (pinned under `pinDir`, shared with
 * the tc datapath) and the reuseport program.
 */
export class ProxySteering {
  private readonly socks: BpfMap;
  private readonly ports: BpfMap;
  private readonly counter: (slot: number) => bigint;
  private current: SteeringPortStatus[] = [];
  private error: string | null = null;
  /** The map keys each instance's sockets got in the last update (for remove()). */
  private keysOf = new Map<string, Buffer[]>();

  private constructor(private readonly obj: BpfObjectHandle) {
    this.socks = BpfMap.fromObject(obj, 'meshd_steer_socks');
    this.ports = BpfMap.fromObject(obj, 'meshd_steer_ports');
    this.counter = perCpuCounters(obj.mapFd('meshd_steer_stats'));
  }

  /** Loads bpf/steer.o with its maps pinned by name under `pinDir` (reused when they exist). */
  static async open(o: { pinDir: string; objectPath?: string }): Promise<ProxySteering> {
    const obj = openObject(o.objectPath ?? bpfObjectPath('steer'), { pinRoot: o.pinDir });
    try {
      await obj.load();
      return new ProxySteering(obj);
    } catch (e) {
      obj.close();
      throw new SteeringError(`loading the proxy steering program: ${e instanceof Error ? e.message : String(e)}`, e);
    }
  }

  /**
   * Steers new connections on `ports` to the listening sockets of exactly
   * `live` (in that order of preference for nothing: the program hashes over
   * them). Per port and family: the set goes under the other generation, then
   * the port switches to it in one update, then the old generation's entries
   * go. A port without any live socket loses its entry (the lookup path).
   * Throws a SteeringError when the sockets cannot be taken (no ptrace right
   * over Envoy); what was steered before stays.
   */
  update(live: readonly SteeringInstance[], ports: readonly number[]): void {
    const want = new Set(ports);
    const taken: Array<{ fd: number; port: number; family: 4 | 6; id: string }> = [];
    try {
      for (const inst of live) {
        for (const s of listeningSockets(inst.pid, want)) {
          let fd: number;
          try {
            fd = native.pidfdGetfd(inst.pid, s.fd);
          } catch (e) {
            // The process went away (or closed that descriptor) meanwhile: it is not live any more.
            if (e instanceof Error && 'code' in e && (e.code === 'ESRCH' || e.code === 'EBADF')) continue;
            throw new SteeringError(`taking Envoy ${inst.id}'s listener (pid ${inst.pid}, fd ${s.fd}): ${e instanceof Error ? e.message : String(e)}`, e);
          }
          const info = native.socketInfo(fd);
          if (!info.listening || info.protocol !== 6 || info.port !== s.port) {
            native.closeFd(fd);
            continue;
          }
          taken.push({ fd, port: s.port, family: s.family, id: inst.id });
        }
      }
      const prog = this.obj.programFd('meshd_proxy_select');
      const steered: SteeringPortStatus[] = [];
      const keysOf = new Map<string, Buffer[]>();
      const known = new Set([...want, ...this.current.map((p) => p.port)]);
      for (const port of known) {
        const prev = this.ports.lookup(u32(port));
        const gen = prev ? SteerPort.decode(prev).gen ^ 1 : 0;
        const counts = { 4: 0, 6: 0 };
        for (const family of [4, 6] as const) {
          const set = taken.filter((t) => t.port === port && t.family === family).slice(0, SteerStat.MAX_SLOTS);
          for (const [slot, s] of set.entries()) {
            const key = steerKey(port, family, gen, slot);
            this.socks.update(key, u64fd(s.fd));
            keysOf.set(s.id, [...(keysOf.get(s.id) ?? []), key]);
          }
          // One socket of the group carries the program for all of it (a group formed anew after every
          // instance's listener closed has none until then).
          const first = set[0];
          if (first) native.reuseportAttach(first.fd, prog);
          counts[family] = set.length;
          if (set.length > 0) steered.push({ port, family, sockets: set.length, instances: [...new Set(set.map((s) => s.id))] });
        }
        if (counts[4] + counts[6] > 0) this.ports.update(u32(port), SteerPort.encode({ gen, count4: counts[4], count6: counts[6], pad: 0 }));
        else this.ports.delete(u32(port));
        this.prune(port, counts[4] + counts[6] > 0 ? gen : -1, counts);
      }
      this.current = steered;
      this.keysOf = keysOf;
      this.error = null;
    } catch (e) {
      this.error = e instanceof Error ? e.message : String(e);
      throw e instanceof SteeringError ? e : new SteeringError(`steering the proxy ports: ${this.error}`, e);
    } finally {
      // The map holds its own references to the sockets.
      for (const t of taken) native.closeFd(t.fd);
    }
  }

  /**
   * Takes instance `id`'s sockets out of the map at once (it exited: no new
   * connection may be handed to it while the kernel is still tearing it
   * down). Its slots stay counted; the lookups skip empty slots. The next
   * update() writes the set anew.
   */
  remove(id: string): void {
    for (const k of this.keysOf.get(id) ?? []) this.socks.delete(k);
    this.keysOf.delete(id);
    this.current = this.current.map((p) => ({ ...p, instances: p.instances.filter((i) => i !== id) })).filter((p) => p.instances.length > 0);
  }

  /** Removes the entries of `port` other than generation `gen`'s first counts[family] slots. */
  private prune(port: number, gen: number, counts: { 4: number; 6: number }): void {
    const stale: Buffer[] = [];
    for (let k = this.socks.nextKey(null); k; k = this.socks.nextKey(k)) {
      const key = SteerKey.decode(k);
      if (key.port !== port) continue;
      if (key.gen !== gen || key.slot >= counts[key.family === 6 ? 6 : 4]) stale.push(Buffer.from(k));
    }
    for (const k of stale) this.socks.delete(k);
  }

  private closed = false;

  status(): SteeringStatus {
    // Closed (a stopped proxy manager): the counters' map is gone; the last entries stay in the kernel.
    const c = (slot: number) => (this.closed ? 0 : Number(this.counter(slot)));
    return {
      path: this.current.length > 0 && this.error === null ? 'socket-map' : 'socket-lookup',
      ports: this.current.map((p) => ({ ...p, instances: [...p.instances] })),
      counters: { tcMap: c(SteerStat.TC_MAP), tcLookup: c(SteerStat.TC_LOOKUP), selected: c(SteerStat.SELECTED), unsteered: c(SteerStat.UNSTEERED) },
      error: this.error,
    };
  }

  /** Closes the program and map descriptors; the pins, the entries and the groups' program stay. Idempotent. */
  close(): void {
    this.closed = true;
    this.obj.close();
  }
}

function u64fd(fd: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(fd, 0);
  return b;
}
