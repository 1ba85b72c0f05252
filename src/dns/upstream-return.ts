/**
 * Transparent mode's return path for resolvers that are not local
 * endpoints (off the node, or a Service backend elsewhere): the proxy asked
 * from the pod's own address, so the resolver answers the pod's address, and
 * that answer enters the node on an uplink where meshd attaches no program.
 * Routed as usual it would go to the pod, which never asked. As Cilium did
 * for its proxies before BPF TPROXY, one netfilter rule marks a packet that a
 * socket with IP_TRANSPARENT bound to exactly its destination (the match
 * ignores sockets on a wildcard address unless told --nowildcard)
 * is waiting for, and the proxy mark's policy routing (table 2004) delivers
 * it to that socket:
 *
 *   iptables  -t mangle -I PREROUTING ! -i lxc+ -m socket --transparent -j MARK --set-xmark 0xb00/0xf00
 *   ip6tables (the same)
 *
 * Not for what enters from pods (`lxc…`, meshd-cni's host veths): the proxy's
 * reply sockets are transparent and bound to resolvers' addresses, and a
 * query a pod without DNS rules sends to that resolver would match them and
 * be swallowed. A local resolver's answers come that way too, and the
 * datapath hands them to the proxy itself.
 *
 * Only the proxy's upstream sockets are transparent and bound to pods'
 * addresses; a pod's own traffic, forwarded, matches no socket of the host
 * namespace. Idempotent, left in place when the agent stops (like the
 * policy routing), removed by removeUpstreamReturn (tests, uninstall). Where
 * iptables is missing, ensureUpstreamReturn fails and the caller keeps
 * off-node resolvers on the node's address with the identity mark.
 */
import { defaultPolicyRouting, type PolicyRoutingOptions } from '../proxy/policy-routing.js';
import { run } from '../util/exec.js';

const COMMENT = 'meshd: DNS proxy transparent upstream answers';
const TOOLS = ['iptables', 'ip6tables'] as const;

function ruleArgs(o: PolicyRoutingOptions): string[] {
  return ['PREROUTING', '!', '-i', 'lxc+', '-m', 'socket', '--transparent', '-m', 'comment', '--comment', COMMENT, '-j', 'MARK', '--set-xmark', `0x${o.mark.toString(16)}/0x${o.mask.toString(16)}`];
}

const present = (tool: string, o: PolicyRoutingOptions): Promise<boolean> =>
  run(tool, ['-w', '5', '-t', 'mangle', '-C', ...ruleArgs(o)]).then(
    () => true,
    () => false,
  );

/** Installs the rule for IPv4 (required) and IPv6 (when the node has it). */
export async function ensureUpstreamReturn(o: PolicyRoutingOptions = defaultPolicyRouting): Promise<void> {
  for (const tool of TOOLS) {
    if (await present(tool, o)) continue;
    const added = run(tool, ['-w', '5', '-t', 'mangle', '-I', ...ruleArgs(o)]);
    if (tool === 'iptables') await added;
    else await added.catch(() => undefined);
  }
}

/** Whether the IPv4 rule is in place (then off-node resolvers get transparent legs). */
export function upstreamReturnInstalled(o: PolicyRoutingOptions = defaultPolicyRouting): Promise<boolean> {
  return present('iptables', o);
}

export async function removeUpstreamReturn(o: PolicyRoutingOptions = defaultPolicyRouting): Promise<void> {
  for (const tool of TOOLS) {
    while (await present(tool, o)) await run(tool, ['-w', '5', '-t', 'mangle', '-D', ...ruleArgs(o)]);
  }
}
