/**
 * Typed entry to the meshd_native addon (native/src/*.cc over libbpf).
 *
 *   import { native, openObject } from '../native/index.js';
 *   const obj = openObject('bpf/build/probe.o');
 *   await obj.load();                    // verifier runs on the libuv pool
 *   const prog = obj.programs()[0];
 *   native.progTestRun(prog.fd, packet);
 *   obj.close();                         // idempotent
 *
 * Pinned state and tunables:
 *
 *   const obj = openObject(bpfObjectPath('sock'), { pinRoot: '/sys/fs/bpf/meshd' });
 *   obj.setGlobal('host_netns_cookie', u64(native.netnsCookie()));  // .rodata, before load
 *   await obj.load();        // maps with LIBBPF_PIN_BY_NAME reused from <pinRoot>/<name>
 *   const svc = BpfMap.fromObject(obj, 'meshd_lb4_svc');
 *   svc.update(key, value, BPF_NOEXIST);
 *   const link = native.attachCgroup(obj.programFd('meshd_connect4'), cgroupDir, AttachType.CgroupInet4Connect);
 *   native.objPin(link, `${pinRoot}/links/connect4`);   // stays attached after exit
 *   native.closeFd(link);
 *
 * Every failure is a BpfError: `errno`, `code` ("EPERM", …), `syscall` (what
 * was being done) and `libbpfLog` (libbpf's own output, the verifier log on a
 * failed load).
 *
 * The host's addresses (rtnetlink, which Node lacks), validated here:
 *
 *   const now = dumpAddresses();                         // HostAddress[]
 *   changeAddress('replace', { ifindex: 3, family: 4, address: '10.0.10.5', prefixlen: 32, scope: AddressScope.host, flags: 0 });
 *   const w = watchAddresses((events) => …, (err) => …);  // AddressEvent[] as they happen
 *   w.close();
 */
import { createRequire } from 'node:module';
import type { z } from 'zod';
import { MeshdError } from '../src/util/errors.js';
import { repoPath } from '../src/util/paths.js';
import type { Datagram, SendFromOptions, UdpSocketHandle, UdpSocketOptions } from './transparent.js';
import { addressEventSchema, hostAddressSchema, NetlinkError, type AddressEvent, type HostAddress } from './netlink.js';

export { AddressScope, NetlinkError, type AddressEvent, type HostAddress } from './netlink.js';

export interface ProgramInfo {
  name: string;
  section: string;
  type: number;
  typeName: string;
  expectedAttachType: number;
  /** -1 until the object is loaded. */
  fd: number;
}

/** A map's kind and sizes, as an object declares it and as the kernel reports it. */
export interface MapDefinition {
  name: string;
  type: number;
  typeName: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** map_flags (BPF_F_NO_PREALLOC, …). */
  flags: number;
}

/** A map of an object; a pin it reuses must match its definition (type, sizes, maxEntries, flags). */
export interface MapInfo extends MapDefinition {
  /** -1 until the object is loaded. */
  fd: number;
  /** <pinRoot>/<name> for maps declared with LIBBPF_PIN_BY_NAME when a pinRoot was given. */
  pinPath: string | null;
  /** After load: the map is pinned (reused from, or newly pinned at, pinPath). */
  pinned: boolean;
  /** .rodata/.data/.bss/.kconfig maps libbpf made for globals. */
  internal: boolean;
}

export interface GlobalInfo {
  name: string;
  section: string;
  offset: number;
  size: number;
}

export interface BpfObjectHandle {
  /** Runs the verifier on the libuv pool; rejects with a BpfError carrying the verifier log. */
  load(): Promise<void>;
  programs(): ProgramInfo[];
  maps(): MapInfo[];
  /** Idempotent; also done by the GC. Pinned maps and links outlive it. */
  close(): void;
  isLoaded(): boolean;
  /** Before load: the initial value of a global (a `const volatile` tunable in .rodata); exact size required. */
  setGlobal(name: string, value: Buffer): void;
  /** Globals as the object's BTF declares them. */
  globals(): GlobalInfo[];
  /** Before load: resize a map. */
  setMaxEntries(mapName: string, maxEntries: number): void;
  /** After load: fd of a program by its C name (not the kernel's 15-char copy). ENOENT if absent. */
  programFd(name: string): number;
  /** After load: fd of a map by name. ENOENT if absent. */
  mapFd(name: string): number;
}

export interface KernelMapInfo extends MapDefinition {
  id: number;
}

export interface KernelProgInfo {
  id: number;
  name: string;
  type: number;
  typeName: string;
  tag: string;
}

export interface LinkInfo {
  id: number;
  type: number;
  typeName: string;
  progId: number;
  /** Cgroup links only. */
  cgroupId?: bigint;
  attachType?: number;
}

export interface TcLegacyHandle {
  priority: number;
  handle: number;
  progId: number;
}

export interface RingBufferReaderHandle {
  /** Idempotent; events still queued for the JS thread are dropped. */
  close(): void;
  /** Records dropped because more than maxPending batches waited for the JS thread. */
  lost(): number;
  /** Records handed to the callback so far. */
  delivered(): number;
  /** Do (not) keep the process alive while open. */
  unref(): void;
  ref(): void;
}

export interface AddressWatcherHandle {
  /** Idempotent; events still queued for the JS thread are dropped. */
  close(): void;
  /** Do (not) keep the process alive while open. */
  unref(): void;
  ref(): void;
}

export interface TestRunResult {
  retval: number;
  durationNs: number;
  dataOut: Buffer;
}

export interface NativeAddon {
  BpfObject: new (path: string, opts?: { pinRoot?: string }) => BpfObjectHandle;
  /** Calls onEvents on the JS thread with each batch of records (copies). */
  RingBufferReader: new (mapFd: number, onEvents: (events: Buffer[]) => void, opts?: { maxPending?: number }) => RingBufferReaderHandle;
  /** Every IPv4/IPv6 address of this network namespace (one RTM_GETADDR dump); see dumpAddresses(). */
  addrDump(): unknown[];
  /** One RTM_NEWADDR (create or replace) or RTM_DELADDR, acknowledged; see changeAddress(). */
  addrChange(op: 'replace' | 'del', ifindex: number, family: 4 | 6, address: string, prefixlen: number, scope: number, flags: number): void;
  /** RTM_NEWADDR/RTM_DELADDR notifications, in batches, on the JS thread; see watchAddresses(). */
  AddressWatcher: new (onEvents: (events: unknown[]) => void) => AddressWatcherHandle;
  libbpfVersion(): string;
  /** ifindex: the device the skb is on (a tc program's skb->ifindex); default 1, loopback. */
  progTestRun(progFd: number, data: Buffer, opts?: { repeat?: number; dataSizeOut?: number; ifindex?: number }): TestRunResult;

  // Maps (by fd). Key/value Buffers must match the map's sizes exactly (EINVAL otherwise).
  mapInfo(mapFd: number): KernelMapInfo;
  mapLookup(mapFd: number, key: Buffer, valueSize: number): Buffer | null;
  /** flags: BPF_ANY | BPF_NOEXIST (EEXIST if present) | BPF_EXIST (ENOENT if absent). */
  mapUpdate(mapFd: number, key: Buffer, value: Buffer, flags?: number): void;
  /** Whether the key existed. */
  mapDelete(mapFd: number, key: Buffer): boolean;
  /** One BPF_MAP_UPDATE_BATCH, or a loop where the map type has none (batched: false). Not atomic. */
  mapUpdateBatch(mapFd: number, keys: Buffer[], values: Buffer[], flags?: number): { count: number; batched: boolean };
  /** How many of the keys existed (absent keys are skipped). */
  mapDeleteBatch(mapFd: number, keys: Buffer[]): number;
  /** null key: the first key; returns null after the last. */
  mapGetNextKey(mapFd: number, key: Buffer | null): Buffer | null;
  mapDump(mapFd: number): Array<[Buffer, Buffer]>;

  // Pins and descriptors.
  objGet(path: string): number;
  objPin(fd: number, path: string): void;
  objUnpin(path: string): boolean;
  closeFd(fd: number): void;
  progInfo(progFd: number): KernelProgInfo;
  /** A duplicate in this process of descriptor `fd` of process `pid` (pidfd_open + pidfd_getfd); the caller closes it. */
  pidfdGetfd(pid: number, fd: number): number;
  /** SO_ATTACH_REUSEPORT_EBPF: the SK_REUSEPORT program selects within the reuseport group of `sockFd`. */
  reuseportAttach(sockFd: number, progFd: number): void;
  /** What a socket descriptor is: listening, protocol (6 TCP), family (4, 6, 0 other), local port. */
  socketInfo(fd: number): { listening: boolean; protocol: number; family: number; port: number };

  // Attaching. All return fds the caller owns (closeFd; pin to keep).
  linkCreate(progFd: number, targetFd: number, attachType: number, flags?: number): number;
  attachCgroup(progFd: number, cgroupPath: string, attachType: number): number;
  attachTcx(progFd: number, ifindex: number, direction: 'ingress' | 'egress'): number;
  tcAttachLegacy(
    progFd: number,
    ifindex: number,
    direction: 'ingress' | 'egress',
    opts?: { priority?: number; handle?: number; replace?: boolean },
  ): TcLegacyHandle;
  tcDetachLegacy(ifindex: number, direction: 'ingress' | 'egress', opts?: { priority?: number; handle?: number }): boolean;
  tcDestroyClsact(ifindex: number): boolean;
  progAttach(progFd: number, targetFd: number, attachType: number, flags?: number): void;
  progDetach(progFd: number, targetFd: number, attachType: number): void;
  linkDetach(linkFd: number): void;
  linkUpdate(linkFd: number, newProgFd: number): void;
  linkInfo(linkFd: number): LinkInfo;

  // Transparent sockets for the DNS proxy (native/src/transparent.cc; typed wrappers in native/transparent.ts).
  UdpSocket: new (opts: UdpSocketOptions, onMessages: (messages: Datagram[]) => void) => UdpSocketHandle;
  sendFrom(data: Buffer, to: SendFromOptions): number;
  tcpListen(opts: { address: string; port: number; transparent?: boolean; backlog?: number }): number;
  tcpConnect(opts: { address: string; port: number; mark?: number; srcAddress?: string; srcPort?: number }): Promise<number>;

  // Host facts.
  /** The cookie bpf_get_netns_cookie() returns for sockets in this process's network namespace. */
  netnsCookie(): bigint;
  ifNameToIndex(name: string): number;
  numPossibleCpus(): number;
}

/** Map update flags (uapi). */
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

/** enum bpf_attach_type values used by meshd (from the running kernel's BTF; TCX is newer than the 6.1 uapi headers). */
export const AttachType = {
  CgroupInetSockCreate: 2,
  CgroupSockOps: 3,
  SkSkbStreamVerdict: 5,
  SkMsgVerdict: 7,
  CgroupInet4Connect: 10,
  CgroupInet6Connect: 11,
  CgroupUdp4Sendmsg: 14,
  CgroupUdp6Sendmsg: 15,
  CgroupUdp4Recvmsg: 19,
  CgroupUdp6Recvmsg: 20,
  CgroupInet4Getpeername: 29,
  CgroupInet6Getpeername: 30,
  CgroupInetSockRelease: 34,
  TcxIngress: 46,
  TcxEgress: 47,
} as const;

export interface BpfError extends Error {
  errno: number;
  code: string;
  syscall: string;
  libbpfLog: string;
}

export function isBpfError(e: unknown): e is BpfError {
  return e instanceof Error && 'errno' in e && typeof e.errno === 'number' && 'libbpfLog' in e;
}

export const addonPath = repoPath('native', 'build', 'Release', 'meshd_native.node');

function loadAddon(): NativeAddon {
  const require = createRequire(import.meta.url);
  try {
    return require(addonPath) as NativeAddon; // the addon's shape is fixed by native/src; this is its typing
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new MeshdError('MESHD_NATIVE_UNAVAILABLE', `meshd native addon not loadable (${why}); run "npm run setup" to build it`, { kind: 'unavailable', cause: e });
  }
}

let loaded: NativeAddon | undefined;

/**
 * The addon, loaded on first use: importing a module that can touch the
 * kernel (the CLI's command table, say) needs no compiled addon, using it
 * does (MESHD_NATIVE_UNAVAILABLE then).
 */
export const native = new Proxy<NativeAddon>(Object.create(null), {
  get: (_target, prop) => Reflect.get((loaded ??= loadAddon()), prop),
});

/**
 * Opens an object. With `pinRoot`, maps declared `LIBBPF_PIN_BY_NAME` are
 * reused from / pinned at `<pinRoot>/<map name>`; without it nothing is
 * pinned (libbpf's own default, /sys/fs/bpf, is never used).
 */
export function openObject(path: string, opts?: { pinRoot?: string }): BpfObjectHandle {
  return new native.BpfObject(path, opts);
}

/** Little-endian encodings for setGlobal(). */
export function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}
export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

/**
 * A map by fd with its shape, for code that works in Buffers (codecs sit on
 * top). `owned` maps (opened from a pin) close their fd in close(); maps
 * borrowed from a BpfObject live as long as the object.
 */
export class BpfMap {
  private closed = false;
  private constructor(
    readonly fd: number,
    readonly info: KernelMapInfo,
    private readonly owned: boolean,
  ) {}

  static fromObject(obj: BpfObjectHandle, name: string): BpfMap {
    const fd = obj.mapFd(name);
    return new BpfMap(fd, native.mapInfo(fd), false);
  }

  /** Opens a pinned map (BPF_OBJ_GET); the fd is closed by close(). */
  static fromPin(path: string): BpfMap {
    const fd = native.objGet(path);
    try {
      return new BpfMap(fd, native.mapInfo(fd), true);
    } catch (e) {
      native.closeFd(fd);
      throw e;
    }
  }

  get keySize(): number {
    return this.info.keySize;
  }
  get valueSize(): number {
    return this.info.valueSize;
  }

  lookup(key: Buffer): Buffer | null {
    return native.mapLookup(this.fd, key, this.info.valueSize);
  }
  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    native.mapUpdate(this.fd, key, value, flags);
  }
  delete(key: Buffer): boolean {
    return native.mapDelete(this.fd, key);
  }
  updateBatch(keys: Buffer[], values: Buffer[], flags = BPF_ANY): { count: number; batched: boolean } {
    return native.mapUpdateBatch(this.fd, keys, values, flags);
  }
  deleteBatch(keys: Buffer[]): number {
    return native.mapDeleteBatch(this.fd, keys);
  }
  nextKey(key: Buffer | null): Buffer | null {
    return native.mapGetNextKey(this.fd, key);
  }
  dump(): Array<[Buffer, Buffer]> {
    return native.mapDump(this.fd);
  }
  pin(path: string): void {
    native.objPin(this.fd, path);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.owned) native.closeFd(this.fd);
  }
}

export type TcAttachment =
  | { kind: 'tcx'; linkFd: number; ifindex: number; direction: 'ingress' | 'egress' }
  | { kind: 'clsact'; ifindex: number; direction: 'ingress' | 'egress'; priority: number; handle: number };

/**
 * Attaches a tc program: a tcx link where the kernel has them (6.6+), else a
 * clsact direct-action filter. A tcx link fd must be pinned or kept open;
 * detachTc() undoes either kind.
 */
export function attachTc(
  progFd: number,
  ifindex: number,
  direction: 'ingress' | 'egress',
  opts: { preferTcx?: boolean; priority?: number; handle?: number } = {},
): TcAttachment {
  if (opts.preferTcx !== false) {
    try {
      return { kind: 'tcx', linkFd: native.attachTcx(progFd, ifindex, direction), ifindex, direction };
    } catch (e) {
      // EINVAL: the kernel does not know the attach type (pre-6.6). Anything else is a real failure.
      if (!isBpfError(e) || e.code !== 'EINVAL') throw e;
    }
  }
  const h = native.tcAttachLegacy(progFd, ifindex, direction, { priority: opts.priority ?? 1, handle: opts.handle ?? 1 });
  return { kind: 'clsact', ifindex, direction, priority: h.priority, handle: h.handle };
}

export function detachTc(a: TcAttachment): void {
  if (a.kind === 'tcx') {
    native.linkDetach(a.linkFd);
    native.closeFd(a.linkFd);
    return;
  }
  native.tcDetachLegacy(a.ifindex, a.direction, { priority: a.priority, handle: a.handle });
}

// ---- the host's addresses (native/src/netlink.cc) ------------------------------------------------

function netlinkFailure(what: string, e: unknown): NetlinkError {
  const errno = e instanceof Error && 'errno' in e && typeof e.errno === 'number' ? e.errno : 0;
  return new NetlinkError(`${what}: ${e instanceof Error ? e.message : String(e)}`, errno, e);
}

function parseNetlink<T>(schema: z.ZodType<T>, raw: unknown, what: string): T {
  const r = schema.safeParse(raw);
  if (!r.success) throw new NetlinkError(`${what}: unexpected shape at ${r.error.issues.map((i) => i.path.join('.')).join(', ')}`, undefined, r.error);
  return r.data;
}

/** Every IPv4/IPv6 address of every interface in this process's network namespace. */
export function dumpAddresses(): HostAddress[] {
  let raw: unknown[];
  try {
    raw = native.addrDump();
  } catch (e) {
    throw netlinkFailure('address dump', e);
  }
  return raw.map((a) => parseNetlink(hostAddressSchema, a, 'address dump'));
}

/**
 * Puts an address on an interface of this process's network namespace, or
 * replaces it there ('replace', idempotent), or removes it ('del'): one
 * acknowledged rtnetlink request, no process. `flags` are IFA_F_* (IFA_F_NODAD
 * for an IPv6 address that needs no duplicate detection).
 */
export function changeAddress(op: 'replace' | 'del', a: HostAddress): void {
  const v = parseNetlink(hostAddressSchema, a, `address ${op}`);
  try {
    native.addrChange(op, v.ifindex, v.family, v.address, v.prefixlen, v.scope, v.flags);
  } catch (e) {
    throw netlinkFailure(`address ${op} ${v.address}/${v.prefixlen} on interface ${v.ifindex}`, e);
  }
}

/** IFA_F_NODAD (linux/if_addr.h): no duplicate address detection for this IPv6 address. */
export const IFA_F_NODAD = 0x02;

/**
 * Address changes of this network namespace as they happen, in batches. Events are validated; a
 * batch that is not is reported to onError whole (and should be treated as an overrun). The watcher
 * keeps the process alive until close() unless unref()'d.
 */
export function watchAddresses(onEvents: (events: AddressEvent[]) => void, onError: (err: NetlinkError) => void): AddressWatcherHandle {
  try {
    return new native.AddressWatcher((raw) => {
      let events: AddressEvent[];
      try {
        events = raw.map((e) => parseNetlink(addressEventSchema, e, 'address event'));
      } catch (e) {
        onError(e instanceof NetlinkError ? e : netlinkFailure('address event', e));
        return;
      }
      onEvents(events);
    });
  } catch (e) {
    throw netlinkFailure('address watcher', e);
  }
}
