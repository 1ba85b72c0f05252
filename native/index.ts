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
 * Every failure is a BpfError: `errno`, `code` ("EPERM", …), `syscall` (what
 * was being done) and `libbpfLog` (libbpf's own output, the verifier log on a
 * failed load).
 */
import { createRequire } from 'node:module';
import { repoPath } from '../src/util/paths.js';

export interface ProgramInfo {
  name: string;
  section: string;
  type: number;
  typeName: string;
  expectedAttachType: number;
  /** -1 until the object is loaded. */
  fd: number;
}

export interface MapInfo {
  name: string;
  type: number;
  typeName: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** -1 until the object is loaded. */
  fd: number;
}

export interface BpfObjectHandle {
  load(): Promise<void>;
  programs(): ProgramInfo[];
  maps(): MapInfo[];
  close(): void;
  isLoaded(): boolean;
}

export interface TestRunResult {
  retval: number;
  durationNs: number;
  dataOut: Buffer;
}

export interface NativeAddon {
  BpfObject: new (path: string, opts?: { pinRoot?: string }) => BpfObjectHandle;
  libbpfVersion(): string;
  progTestRun(progFd: number, data: Buffer, opts?: { repeat?: number; dataSizeOut?: number }): TestRunResult;
  mapLookup(mapFd: number, key: Buffer, valueSize: number): Buffer | null;
}

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
    throw new Error(`meshd native addon not loadable (${why}); run "npm run setup" to build it`);
  }
}

export const native: NativeAddon = loadAddon();

export function openObject(path: string, opts?: { pinRoot?: string }): BpfObjectHandle {
  return new native.BpfObject(path, opts);
}
