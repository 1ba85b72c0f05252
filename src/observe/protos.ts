/**
 * Hubble's protocol, loaded at run time from the github.com/cilium/cilium Go
 * module in the Go module cache (api/v1/{observer,flow,relay,peer}); the
 * version is the one scripts/cilium-module.sh pins and fetches, so the protos
 * meshd serves are exactly those the `hubble` CLI of that version was built
 * from. Nothing of them is copied into this repository.
 *
 *   const { Observer } = loadHubbleProtos();   // grpc.ServiceClientConstructor
 *   server.addService(Observer.service, impl);
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isMeshdError, MeshdError } from '../util/errors.js';
import { repoPath } from '../util/paths.js';
import { flowsResponseDecoder } from './flow-codec.js';

export class HubbleProtosMissingError extends MeshdError {
  constructor(message: string, cause?: unknown) {
    super('MESHD_OBSERVE_PROTOS_MISSING', message, { kind: 'not-found', cause });
  }
}

/** The cilium module version scripts/cilium-module.sh pins (read from the script: one place says it). */
export function ciliumModuleVersion(): string {
  const script = repoPath('scripts', 'cilium-module.sh');
  let text: string;
  try {
    text = readFileSync(script, 'utf8');
  } catch (e) {
    throw new HubbleProtosMissingError(`scripts/cilium-module.sh: cannot read the pinned cilium module version`, e);
  }
  const m = /^CILIUM_VERSION="(v[0-9][^"]*)"$/m.exec(text);
  if (!m?.[1]) throw new HubbleProtosMissingError('scripts/cilium-module.sh: no CILIUM_VERSION="v…" line');
  return m[1];
}

/** Go's module cache as `go env GOMODCACHE` resolves it: GOMODCACHE, else the first GOPATH entry's pkg/mod, else ~/go/pkg/mod. */
export function goModCache(env: NodeJS.ProcessEnv = process.env): string {
  if (env.GOMODCACHE) return env.GOMODCACHE;
  const gopath = env.GOPATH?.split(':').find((p) => p !== '');
  return join(gopath ?? join(homedir(), 'go'), 'pkg', 'mod');
}

/** The directory holding observer/observer.proto, flow/flow.proto, relay/… and peer/…. */
export function hubbleProtoDir(env: NodeJS.ProcessEnv = process.env): string {
  const version = ciliumModuleVersion();
  const dir = join(goModCache(env), `github.com/cilium/cilium@${version}`, 'api', 'v1');
  if (!existsSync(join(dir, 'observer', 'observer.proto'))) {
    throw new HubbleProtosMissingError(
      `Hubble's protos (github.com/cilium/cilium@${version}, api/v1/observer/observer.proto) are not in the Go module cache at ${dir}: run scripts/cilium-module.sh`,
    );
  }
  return dir;
}

export interface HubbleProtos {
  Observer: grpc.ServiceClientConstructor;
  Peer: grpc.ServiceClientConstructor;
  dir: string;
}

let cached: HubbleProtos | undefined;

/** proto-loader options shared by the server and meshd's clients: the object form src/observe/flow.ts types. */
export const HUBBLE_LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true };

/**
 * Channel options for clients of the observer API (meshd observe, the relay, the UI): a 16 MiB HTTP/2
 * flow-control window instead of 64 KiB, so a follower's stream is not held up by a window update
 * per ~130 flows (the server then waits for each round trip and the store laps it under load).
 */
export const HUBBLE_CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc-node.flow_control_window': 16 * 1024 * 1024 };

interface LoadedPackages {
  observer?: { Observer?: grpc.ServiceClientConstructor };
  peer?: { Peer?: grpc.ServiceClientConstructor };
}

/**
 * GetFlows responses decoded by the compiled decoder (flow-codec.ts: the same object, a third of
 * proto-loader's CPU per flow; a follower decodes every flow the node sends), falling back to
 * proto-loader's deserializer for bytes it cannot read. Set in the definition before the client
 * constructors are made from it: they take their deserializers from it once.
 */
function useCompiledDecoder(def: protoLoader.PackageDefinition, dir: string): void {
  const service = def['observer.Observer'];
  const method = service && 'GetFlows' in service ? service.GetFlows : undefined;
  if (!method || typeof method !== 'object' || !('responseDeserialize' in method)) return;
  const slow = method.responseDeserialize;
  const fast = flowsResponseDecoder(dir);
  method.responseDeserialize = (bytes: Buffer) => {
    try {
      return fast(bytes);
    } catch (e) {
      if (isMeshdError(e, 'MESHD_OBSERVE_DECODE')) return slow(bytes);
      throw e;
    }
  };
}

export function loadHubbleProtos(): HubbleProtos {
  if (cached) return cached;
  const dir = hubbleProtoDir();
  let def: protoLoader.PackageDefinition;
  try {
    def = protoLoader.loadSync(['observer/observer.proto', 'peer/peer.proto'], { ...HUBBLE_LOADER_OPTIONS, includeDirs: [dir] });
  } catch (e) {
    throw new HubbleProtosMissingError(`cannot load Hubble's protos from ${dir}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  useCompiledDecoder(def, dir);
  const pkg: LoadedPackages = grpc.loadPackageDefinition(def);
  const Observer = pkg.observer?.Observer;
  const Peer = pkg.peer?.Peer;
  if (!Observer || !Peer) throw new HubbleProtosMissingError(`${dir}: observer.Observer or peer.Peer missing from the protos`);
  cached = { Observer, Peer, dir };
  return cached;
}
