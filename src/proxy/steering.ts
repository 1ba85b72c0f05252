/**
 * How new connections find an Envoy when there are several (replicas, or the
 * old and the new one during a planned replacement): every instance binds
 * each proxy port with SO_REUSEPORT, so the kernel keeps one reuseport group
 * per port holding every instance's listener sockets. The datapath's
 * listener lookup on (proxy address, proxy port) (bpf/lib/redirect.h) gets a
 * socket of that group, chosen per connection by the kernel's reuseport
 * selection, so:
 *
 * - a new instance takes connections from the moment its listeners are
 *   bound (it is counted live only after it ACKed the configuration);
 * - a listener that closes (a drained instance, or a killed one: the kernel
 *   closes its sockets) leaves the group at once, and the next SYN goes to a
 *   remaining socket: no map to update, nothing the agent must be alive for;
 * - with `net.ipv4.tcp_migrate_req=1` the connections that were queued on a
 *   closing listener (SYN received or handshake done, not yet accepted) move
 *   to another listener of the group instead of being reset.
 *
 *   await enableRequestMigration();          // once, in the namespace the listeners live in
 *   const out = withReusePort(translated);    // every listener: enable_reuse_port
 */

import { readFileSync, writeFileSync } from 'node:fs';

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
