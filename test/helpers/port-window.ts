/**
 * A window of TCP/UDP ports for one test agent's proxies (its `proxy.portRange`:
 * Envoy's listeners and, at its top port, the DNS proxy), held by this process
 * alone among the test processes on the machine (claim.ts). Windows lie in
 * 10000–11999, which no other test helper uses and which is below the kernel's
 * ephemeral port range.
 *
 *   const w = claimPortWindow();   // { range: '10040-10079', first, last, release() }
 */
import { claim } from './claim.js';

const FIRST = 10_000;
const SIZE = 40;
const COUNT = 50;

export interface PortWindow {
  /** "first-last", as `proxy.portRange` takes it. */
  readonly range: string;
  readonly first: number;
  readonly last: number;
  release(): void;
}

export function claimPortWindow(): PortWindow {
  const c = claim('ports', COUNT);
  const first = FIRST + c.index * SIZE;
  const last = first + SIZE - 1;
  return { range: `${first}-${last}`, first, last, release: c.release };
}
