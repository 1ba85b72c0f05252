/**
 * A snapshot: one complete, versioned set of resources for a node (or node
 * group). Built once from Envoy-JSON resources; every resource is encoded and
 * content-hashed at build time, so serving it costs no encoding.
 *
 *   const snap = buildSnapshot({ version: 'v1', resources: { clusters: [...], listeners: [...] } });
 *   checkConsistency(snap); // throws SNAPSHOT_INCONSISTENT naming what is missing
 *
 * A snapshot is immutable; the cache assigns per-type versions when it is set.
 *
 * Resource objects passed in are taken as immutable too: building remembers
 * each object's encoding, so passing the same object again (in this group's
 * next snapshot or in another group's) costs no validation, encoding or
 * hashing. A caller that changes a resource passes a new object; one that
 * rebuilds every object from scratch pays one comparison per resource with
 * the previous snapshot's JSON to find the unchanged ones.
 */
import { hash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { XdsError } from './errors.js';
import { type AnyMessage, ResourceCodec, contentVersion } from './resource-codec.js';
import { KIND_ORDER, NAME_FIELD, type ResourceKind, TYPE_URL } from './type-urls.js';

export interface SnapshotInput {
  version: string;
  resources: Partial<Record<ResourceKind, readonly unknown[]>>;
}

export interface SnapshotResource {
  readonly name: string;
  /** Content hash of the encoded resource (the per-resource version in delta xDS). */
  readonly version: string;
  readonly any: AnyMessage;
  /** The JSON it was built from (read-only by convention); the next build compares with it to reuse the encoding. */
  readonly json: Readonly<Record<string, unknown>>;
  /**
   * What the resource refers to, found once when it is built (the consistency
   * check reads these instead of walking the JSON): route configurations a
   * listener loads over RDS, the load assignment an EDS cluster asks for.
   * Absent on resources made elsewhere; the check then walks `json`.
   */
  readonly refs?: readonly ResourceRef[];
}

export interface ResourceRef {
  readonly kind: 'routes' | 'endpoints';
  readonly name: string;
  /** Where the reference sits, below the resource (for the problem message). */
  readonly path: string;
}

export interface SnapshotTypeSet {
  readonly items: ReadonlyMap<string, SnapshotResource>;
  /** Hash over every (name, version) of the type: equal hashes mean equal content. */
  readonly hash: string;
}

export interface Snapshot {
  readonly version: string;
  readonly types: Readonly<Record<ResourceKind, SnapshotTypeSet>>;
}

let sharedCodec: ResourceCodec | undefined;

function defaultCodec(): ResourceCodec {
  sharedCodec ??= new ResourceCodec();
  return sharedCodec;
}

/** Per codec: the resource built from each JSON object handed in (see the module comment). */
const builtFrom = new WeakMap<ResourceCodec, WeakMap<object, SnapshotResource>>();

function typeHash(items: ReadonlyMap<string, SnapshotResource>): string {
  const parts: string[] = [];
  for (const name of [...items.keys()].sort()) parts.push(name, '\0', items.get(name)?.version ?? '', '\n');
  return hash('sha256', parts.join(''), 'hex').slice(0, 16);
}

/** The previous type set's hash when `items` holds exactly the same resource objects (nothing changed). */
function unchangedHash(items: ReadonlyMap<string, SnapshotResource>, prev: SnapshotTypeSet | undefined): string | undefined {
  if (!prev || prev.items.size !== items.size) return undefined;
  for (const [name, r] of items) if (prev.items.get(name) !== r) return undefined;
  return prev.hash;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Equal JSON values (key order aside): walks both, allocates nothing, stops
 * at the first difference. Anything but plain JSON (a typed array, say) is
 * left to node's deep equality.
 */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (!isRecord(a) || !isRecord(b)) return false;
  if (Object.getPrototypeOf(a) !== Object.prototype || Object.getPrototypeOf(b) !== Object.prototype) return isDeepStrictEqual(a, b);
  let keys = 0;
  for (const k in a) {
    keys++;
    if (!Object.hasOwn(b, k) || !sameJson(a[k], b[k])) return false;
  }
  for (const k in b) if (Object.hasOwn(b, k)) keys--;
  return keys === 0;
}

function refsOf(kind: ResourceKind, name: string, json: Readonly<Record<string, unknown>>): ResourceRef[] | undefined {
  if (kind === 'listeners') {
    const found: Array<{ path: string; value: unknown }> = [];
    collect(json, 'rds', '', found);
    const refs: ResourceRef[] = [];
    for (const ref of found) {
      if (!isRecord(ref.value)) continue;
      const route = ref.value.route_config_name ?? ref.value.routeConfigName;
      if (typeof route === 'string') refs.push({ kind: 'routes', name: route, path: ref.path });
    }
    return refs;
  }
  if (kind === 'clusters') {
    const eds = edsServiceName(json);
    return eds === undefined ? [] : [{ kind: 'endpoints', name: eds, path: '' }];
  }
  return undefined;
}

/**
 * Encodes every resource. Collects every problem of every resource (paths
 * like `resources.clusters[2].connect_timeout`) and throws once: SNAPSHOT_INVALID.
 * A resource object built before is not looked at again; with `previous`, a
 * resource whose JSON text is unchanged reuses its encoding instead of being
 * encoded again (the common case for an agent that republishes the whole set
 * on every change).
 */
export function buildSnapshot(input: SnapshotInput, codec: ResourceCodec = defaultCodec(), previous?: Snapshot): Snapshot {
  const problems: string[] = [];
  if (typeof input.version !== 'string' || input.version === '') problems.push('version: must be a non-empty string');
  let known = builtFrom.get(codec);
  if (!known) {
    known = new WeakMap();
    builtFrom.set(codec, known);
  }
  const types = {} as Record<ResourceKind, SnapshotTypeSet>;
  for (const kind of KIND_ORDER) {
    const items = new Map<string, SnapshotResource>();
    const list = input.resources[kind] ?? [];
    list.forEach((r, i) => {
      const path = `resources.${kind}[${i}]`;
      if (!isRecord(r)) {
        problems.push(`${path}: expected an object`);
        return;
      }
      const seen = known.get(r);
      if (seen && seen.any.type_url === TYPE_URL[kind]) {
        // built before from this very object: its checks passed then
        if (items.has(seen.name)) problems.push(`${path}.${NAME_FIELD[kind]}: duplicate name "${seen.name}"`);
        else items.set(seen.name, seen);
        return;
      }
      if (r['@type'] !== TYPE_URL[kind]) {
        problems.push(`${path}.@type: must be "${TYPE_URL[kind]}" in resources.${kind}, got ${JSON.stringify(r['@type'])}`);
        return;
      }
      const name = r[NAME_FIELD[kind]];
      if (typeof name !== 'string' || name === '') {
        problems.push(`${path}.${NAME_FIELD[kind]}: required (it names the resource)`);
        return;
      }
      if (items.has(name)) {
        problems.push(`${path}.${NAME_FIELD[kind]}: duplicate name "${name}"`);
        return;
      }
      try {
        const prev = previous?.types[kind].items.get(name);
        // an equal resource keeps its entry (and `json`, the equal object it was built from), so an
        // unchanged type is recognised by identity below, without hashing it again
        const built: SnapshotResource =
          prev && sameJson(prev.json, r)
            ? prev
            : (() => {
                const any = codec.pack(r, path);
                return { name, version: contentVersion(any), any, json: r, refs: refsOf(kind, name, r) };
              })();
        known.set(r, built);
        items.set(name, built);
      } catch (e) {
        if (e instanceof XdsError) problems.push(...e.problems);
        else throw e;
      }
    });
    types[kind] = { items, hash: unchangedHash(items, previous?.types[kind]) ?? typeHash(items) };
  }
  if (problems.length > 0) {
    throw new XdsError('MESHD_XDS_SNAPSHOT_INVALID', `snapshot ${JSON.stringify(input.version)}: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, problems);
  }
  return { version: input.version, types };
}

/** Every value of key `key` anywhere below `v`, with its path. */
function collect(v: unknown, key: string, path: string, out: Array<{ path: string; value: unknown }>): void {
  if (Array.isArray(v)) {
    v.forEach((x: unknown, i) => collect(x, key, `${path}[${i}]`, out));
  } else if (isRecord(v)) {
    for (const [k, x] of Object.entries(v)) {
      if (k === key) out.push({ path: `${path}.${k}`, value: x });
      collect(x, key, `${path}.${k}`, out);
    }
  }
}

/**
 * References a snapshot must satisfy before it is published (go-control-plane
 * calls this consistency): every route configuration a listener loads over
 * RDS is in `routes`, and every EDS cluster's load assignment is in `endpoints`.
 * Returns the problems; `checkConsistency` throws them.
 */
export function consistencyProblems(snap: Snapshot): string[] {
  const problems: string[] = [];
  const routes = snap.types.routes.items;
  const endpoints = snap.types.endpoints.items;
  for (const l of snap.types.listeners.items.values()) {
    for (const ref of l.refs ?? refsOf('listeners', l.name, l.json) ?? []) {
      if (!routes.has(ref.name)) {
        problems.push(`listeners[${JSON.stringify(l.name)}]${ref.path}.route_config_name: route configuration "${ref.name}" is not in the snapshot`);
      }
    }
  }
  for (const c of snap.types.clusters.items.values()) {
    for (const ref of c.refs ?? refsOf('clusters', c.name, c.json) ?? []) {
      if (!endpoints.has(ref.name)) {
        problems.push(`clusters[${JSON.stringify(c.name)}]: EDS load assignment "${ref.name}" is not in the snapshot`);
      }
    }
  }
  return problems;
}

/** The load assignment an EDS cluster asks for (eds_cluster_config.service_name, else its name); undefined for other clusters. */
export function edsServiceName(cluster: Readonly<Record<string, unknown>>): string | undefined {
  if (cluster.type !== 'EDS') return undefined;
  const eds = cluster.eds_cluster_config ?? cluster.edsClusterConfig;
  const service = isRecord(eds) ? (eds.service_name ?? eds.serviceName) : undefined;
  if (typeof service === 'string' && service !== '') return service;
  return typeof cluster.name === 'string' ? cluster.name : undefined;
}

export function checkConsistency(snap: Snapshot): void {
  const problems = consistencyProblems(snap);
  if (problems.length > 0) {
    throw new XdsError('MESHD_XDS_SNAPSHOT_INCONSISTENT', `snapshot ${JSON.stringify(snap.version)}: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, problems);
  }
}

/** Resource count per kind, for logs and status. */
export function snapshotCounts(snap: Snapshot): Record<ResourceKind, number> {
  const out = {} as Record<ResourceKind, number>;
  for (const k of KIND_ORDER) out[k] = snap.types[k].items.size;
  return out;
}
