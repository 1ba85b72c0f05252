/**
 * Envoy's protobuf schema, loaded once per process from the .proto files that
 * ship inside @grpc/grpc-js-xds (deps/envoy-api, deps/xds, deps/googleapis,
 * deps/protoc-gen-validate). Every v3 message under envoy/config and
 * envoy/extensions is loaded, so any typed_config an Envoy resource carries
 * can be packed into google.protobuf.Any by name.
 *
 *   const root = xdsProtos();
 *   root.lookupType('envoy.config.cluster.v3.Cluster');
 *
 * Field names keep their proto spelling (snake_case), the shape Envoy prints
 * in /config_dump.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { XdsError } from './errors.js';

const require = createRequire(import.meta.url);

function packageDir(name: string): string {
  return dirname(require.resolve(`${name}/package.json`));
}

/** Envoy protos meshd carries itself (xds/protos/README.md); loaded after the package's. */
const EXTRA_PROTOS_DIR = extraProtosDir();
function extraProtosDir(): string {
  // xds/protos.ts runs from xds/ (sources) or dist/xds/ (compiled); the .proto files stay in xds/protos.
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'protos'), join(here, '..', '..', 'xds', 'protos')];
  return candidates.find((d) => existsSync(join(d, 'README.md'))) ?? candidates[0] ?? here;
}
export const EXTRA_PROTO_FILES = [
  'envoy/extensions/filters/network/ext_proc/v3/ext_proc.proto',
  'envoy/service/network_ext_proc/v3/network_external_processor.proto',
];

/** Directories searched for imports, in order. */
export function protoIncludeDirs(): string[] {
  const deps = join(packageDir('@grpc/grpc-js-xds'), 'deps');
  return [
    join(deps, 'envoy-api'),
    join(deps, 'xds'),
    join(deps, 'googleapis'),
    join(deps, 'protoc-gen-validate'),
    // Envoy APIs the package does not ship (network ext_proc), pinned in xds/protos/README.md
    EXTRA_PROTOS_DIR,
    // google/protobuf/descriptor.proto (the validate and udpa annotations extend it)
    packageDir('protobufjs'),
  ];
}

const SERVICE_DIRS = new Set(['discovery', 'listener', 'cluster', 'route', 'endpoint', 'secret']);

function walk(dir: string, out: string[]): string[] {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.proto')) out.push(p);
  }
  return out;
}

function wantedFiles(envoyApi: string): string[] {
  return walk(join(envoyApi, 'envoy'), [])
    .map((p) => relative(envoyApi, p).split(sep).join('/'))
    .filter((f) => {
      if (!f.includes('/v3/')) return false;
      const parts = f.split('/');
      if (parts[1] === 'service') return SERVICE_DIRS.has(parts[2] ?? '');
      return parts[1] === 'config' || parts[1] === 'extensions' || parts[1] === 'type';
    });
}

const IMPORT_RE = /^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;/gm;

/**
 * The first import (transitively) of `file` that no include directory has,
 * or undefined. Files are checked before loading because a failed load
 * leaves half-defined types in the root that break later, valid files.
 */
function missingImport(file: string, dirs: string[], seen: Map<string, string | undefined>): string | undefined {
  if (seen.has(file)) return seen.get(file);
  seen.set(file, undefined); // cycles: assume fine while visiting
  if (file.startsWith('google/protobuf/')) return undefined; // protobufjs ships these
  const path = dirs.map((d) => join(d, file)).find((p) => existsSync(p));
  let missing: string | undefined;
  if (!path) {
    missing = file;
  } else {
    for (const m of readFileSync(path, 'utf8').matchAll(IMPORT_RE)) {
      const dep = m[1];
      if (dep === undefined) continue;
      missing = missingImport(dep, dirs, seen);
      if (missing !== undefined) break;
    }
  }
  seen.set(file, missing);
  return missing;
}

let cached: { root: protobuf.Root; skipped: string[] } | undefined;

/**
 * The loaded schema. A handful of files import protos that the package does
 * not ship (OpenCensus, OpenTelemetry); they are skipped and listed by
 * `skippedProtoFiles()`. A missing discovery service is a hard error.
 */
export function xdsProtos(): protobuf.Root {
  if (cached) return cached.root;
  const dirs = protoIncludeDirs();
  const envoyApi = dirs[0];
  if (!envoyApi || !existsSync(envoyApi)) {
    throw new XdsError('MESHD_XDS_PROTO_LOAD', `Envoy protos not found at ${String(envoyApi)} (is @grpc/grpc-js-xds installed?)`);
  }
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const d of dirs) {
      const p = join(d, target);
      if (existsSync(p)) return p;
    }
    return target;
  };
  const skipped: string[] = [];
  const seen = new Map<string, string | undefined>();
  for (const f of [...wantedFiles(envoyApi), ...EXTRA_PROTO_FILES]) {
    const missing = missingImport(f, dirs, seen);
    if (missing !== undefined) {
      skipped.push(`${f}: needs ${missing}, which is not shipped`);
      continue;
    }
    try {
      root.loadSync(f, { keepCase: true });
    } catch (e) {
      skipped.push(`${f}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  try {
    root.lookupService('envoy.service.discovery.v3.AggregatedDiscoveryService');
    root.lookupType('envoy.service.discovery.v3.DeltaDiscoveryResponse');
  } catch (e) {
    throw new XdsError('MESHD_XDS_PROTO_LOAD', `discovery protos missing: ${e instanceof Error ? e.message : String(e)}`);
  }
  cached = { root, skipped };
  return root;
}

export function skippedProtoFiles(): readonly string[] {
  xdsProtos();
  return cached?.skipped ?? [];
}
