/**
 * Loads bpf/lxc.o with its maps pinned by name under the pin directory. On a
 * restart the maps are reused from their pins (policy, ipcache, endpoints,
 * conntrack survive); a pin whose shape no longer matches the object is
 * refused before anything is loaded or pinned
 * (MESHD_DATAPATH_PINNED_MAP_MISMATCH), so an old agent's state is never
 * half-replaced.
 *
 *   const { obj, fds, capacity } = await loadEndpointObject({ pinDir });
 *   …
 *   obj.close();                 // the caller owns obj; pins stay
 *
 * The verifier runs on the libuv pool (await); everything else blocks.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type BpfObjectHandle, openObject } from '../../../native/index.js';
import { bpfObjectPath } from '../../util/paths.js';
import { assertPinnedMapsMatch } from '../pinned-maps.js';

/** Maps a caller may resize before load. */
export type ResizableMap =
  | 'meshd_policy'
  | 'meshd_pol_exact'
  | 'meshd_ipcache'
  | 'meshd_ipc_host'
  | 'meshd_ct'
  | 'meshd_endpoints'
  | 'meshd_nat'
  /** The socket LB's maps this object shares by pin must be sized as the socket LB sized them (bpf.lbMapMax). */
  | 'meshd_lb_svc'
  | 'meshd_lb_be'
  | 'meshd_lb_revnat'
  | 'meshd_lb_affin'
  | 'meshd_lb_affm'
  | 'meshd_lb_maglev';

export interface LoadOptions {
  /** bpffs directory for maps (by name) and links (links/). */
  pinDir: string;
  /** Object to load (default bpf/build/lxc.o). */
  objectPath?: string;
  /** Resize maps before load (tests; a pinned map of another size is refused, not reused). */
  maxEntries?: Partial<Record<ResizableMap, number>>;
}

/** Descriptors of the loaded object; valid until the object is closed. */
export interface EndpointFds {
  fromPod: number;
  toPod: number;
  /** LPM trie: port ranges, any port, any protocol */
  policy: number;
  /** hash: exact ports */
  policyExact: number;
  /** LPM trie: prefixes shorter than a whole address */
  ipcache: number;
  /** hash: /32 and /128 */
  ipcacheHost: number;
  ct: number;
  endpoints: number;
  config: number;
  events: number;
  nat: number;
  epIps: number;
  metrics: number;
}

/** max_entries of the maps whose writers check capacity before writing. */
export interface EndpointCapacity {
  policy: number;
  policyExact: number;
  ipcache: number;
  ipcacheHost: number;
  endpoints: number;
}

export interface LoadedEndpointObject {
  obj: BpfObjectHandle;
  fds: EndpointFds;
  capacity: EndpointCapacity;
}

export async function loadEndpointObject(opts: LoadOptions): Promise<LoadedEndpointObject> {
  mkdirSync(join(opts.pinDir, 'links'), { recursive: true });
  const obj = openObject(opts.objectPath ?? bpfObjectPath('lxc'), { pinRoot: opts.pinDir });
  try {
    for (const [name, n] of Object.entries(opts.maxEntries ?? {})) obj.setMaxEntries(name, n);
    assertPinnedMapsMatch(obj, 'MESHD_DATAPATH_PINNED_MAP_MISMATCH', `remove the pins under ${opts.pinDir} to start without the old state`);
    await obj.load();
    const fds: EndpointFds = {
      fromPod: obj.programFd('meshd_from_pod'),
      toPod: obj.programFd('meshd_to_pod'),
      policy: obj.mapFd('meshd_policy'),
      policyExact: obj.mapFd('meshd_pol_exact'),
      ipcache: obj.mapFd('meshd_ipcache'),
      ipcacheHost: obj.mapFd('meshd_ipc_host'),
      ct: obj.mapFd('meshd_ct'),
      endpoints: obj.mapFd('meshd_endpoints'),
      config: obj.mapFd('meshd_config'),
      events: obj.mapFd('meshd_events'),
      nat: obj.mapFd('meshd_nat'),
      epIps: obj.mapFd('meshd_ep_ips'),
      metrics: obj.mapFd('meshd_metrics'),
    };
    const size = (name: string) => obj.maps().find((m) => m.name === name)?.maxEntries ?? 0;
    const capacity: EndpointCapacity = {
      policy: size('meshd_policy'),
      policyExact: size('meshd_pol_exact'),
      ipcache: size('meshd_ipcache'),
      ipcacheHost: size('meshd_ipc_host'),
      endpoints: size('meshd_endpoints'),
    };
    return { obj, fds, capacity };
  } catch (e) {
    obj.close();
    throw e;
  }
}
