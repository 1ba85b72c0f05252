/**
 * The local host's own addresses, kept current from the kernel (rtnetlink,
 * through the native addon), so that the policy engine can give them the
 * `host` identity whether or not a Node object names this node.
 *
 *   import { dumpAddresses, watchAddresses } from '../../native/index.js';
 *   const w = watchHostAddresses({
 *     source: { dump: dumpAddresses, watch: watchAddresses },
 *     onChange: (ips) => engine.setHostAddresses(ips),
 *     onError: (e) => log.warn('host addresses', { err: e }),
 *   });
 *   engine.setHostAddresses(w.current());   // the set at start, before the first write
 *   …
 *   w.close();                              // idempotent
 *
 * Notifications only say that something changed: after a quiet `debounceMs`
 * the whole set is read again with a dump, so a burst of changes costs one
 * update and a lost notification (the socket's queue overflowed) cannot
 * leave the set wrong. onChange is called only when the set differs.
 *
 * Which addresses count: those of universe or site scope. Loopback (scope
 * host) and link-local (scope link) addresses are left out: the kernel never
 * uses one as the source of a packet to a pod's (universe) address, and a
 * link-local address is not unique across links, so giving it an identity
 * could only mislabel another link's peer. Addresses whose duplicate address
 * detection failed are not usable and are left out too.
 */
import { AddressScope, type AddressEvent, type HostAddress, type NetlinkError } from '../../native/netlink.js';

/** Where addresses come from: the addon's dumpAddresses/watchAddresses (native/index.ts). */
export interface AddressSource {
  dump(): HostAddress[];
  watch(onEvents: (events: AddressEvent[]) => void, onError: (err: NetlinkError) => void): { close(): void };
}

/** IFA_F_DADFAILED (linux/if_addr.h): duplicate address detection failed; the address is never used. */
const IFA_F_DADFAILED = 0x08;

/** The addresses of a dump that carry the host identity, normalised and sorted, without duplicates. */
export function hostIdentityAddresses(addrs: readonly HostAddress[]): string[] {
  const out = new Set<string>();
  for (const a of addrs) {
    if (a.scope > AddressScope.site) continue;
    if ((a.flags & IFA_F_DADFAILED) !== 0) continue;
    out.add(a.address);
  }
  return [...out].sort();
}

export interface HostAddressWatcherOptions {
  source: AddressSource;
  /** The new set, each time it changes (not called for the initial set: read current()). */
  onChange: (ips: string[]) => void;
  /** A failed re-read or an invalid notification; the previous set stays and the next change retries. */
  onError: (err: unknown) => void;
  /** Quiet time after a notification before the set is read again. Default 100 ms. */
  debounceMs?: number;
}

export interface HostAddressWatcher {
  /** The set as last read. */
  current(): string[];
  close(): void;
}

/** Starts watching this process's network namespace; reads the initial set before returning. */
export function watchHostAddresses(opts: HostAddressWatcherOptions): HostAddressWatcher {
  const debounceMs = opts.debounceMs ?? 100;
  const { source } = opts;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let set: string[] = [];
  const reread = (): void => {
    timer = undefined;
    if (closed) return;
    let next: string[];
    try {
      next = hostIdentityAddresses(source.dump());
    } catch (e) {
      opts.onError(e);
      return;
    }
    if (next.length === set.length && next.every((ip, i) => ip === set[i])) return;
    set = next;
    opts.onChange([...set]);
  };
  const schedule = (): void => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(reread, debounceMs);
  };
  // Subscribe before the first dump: a change between the two then still triggers a re-read.
  const watcher = source.watch(schedule, (err) => {
    opts.onError(err);
    schedule();
  });
  try {
    set = hostIdentityAddresses(source.dump());
  } catch (e) {
    watcher.close();
    throw e;
  }
  return {
    current: () => [...set],
    close: () => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      watcher.close();
    },
  };
}
