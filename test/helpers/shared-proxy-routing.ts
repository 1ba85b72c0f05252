/**
 * The proxies' host-wide state that every agent on a machine shares: the
 * proxy mark's policy routing (table 2004, both families) and the DNS proxy's
 * upstream return rule (iptables mangle). Agents leave it in place when they
 * stop; a test removes it when it is done, but only when no other test agent
 * (of this process or another test process running at the same time) still
 * holds it: removing it under a running agent breaks its proxies.
 *
 *   const hold = holdSharedProxyRouting();   // before the agent starts
 *   …
 *   await hold.release();                   // after it stopped
 */
import { removeUpstreamReturn } from '../../src/dns/upstream-return.js';
import { removePolicyRouting, removePolicyRouting6 } from '../../src/proxy/policy-routing.js';
import { claim } from './claim.js';

export interface SharedProxyRouting {
  release(): Promise<void>;
}

export function holdSharedProxyRouting(): SharedProxyRouting {
  const c = claim('proxy-routing', 256);
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      const others = c.others();
      c.release();
      if (others) return;
      await removePolicyRouting();
      await removePolicyRouting6();
      await removeUpstreamReturn();
    },
  };
}
