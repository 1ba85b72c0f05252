/**
 * The proxy mark's policy routing for IPv6, which the DNS proxy needs for
 * pods' IPv6 DNS flows: the datapath assigns such a packet to the proxy's
 * socket (looked up as [::1]:port, bpf/lib/redirect.h) and marks it, and, as
 * for IPv4 (src/proxy/policy-routing.ts), only a rule for the mark and a local
 * route in its table make the kernel deliver it:
 *
 *   ip -6 rule add fwmark 0xb00/0xf00 lookup 2004 priority 9
 *   ip -6 route replace local ::/0 dev lo table 2004
 *
 * Same mark, table and priority as IPv4 (one RoutingWatch sees both
 * families). Idempotent; left in place when the agent stops, like the IPv4
 * part; removePolicyRouting6 is for tests and uninstall. A node with IPv6
 * disabled has nothing to route: ensurePolicyRouting6 fails, and the caller
 * logs it and serves IPv4.
 */
import { defaultPolicyRouting, type PolicyRoutingOptions } from '../proxy/policy-routing.js';
import { run } from '../util/exec.js';

const hex = (n: number): string => `0x${n.toString(16)}`;
const ruleArgs = (o: PolicyRoutingOptions): string[] => ['fwmark', `${hex(o.mark)}/${hex(o.mask)}`, 'lookup', String(o.table), 'priority', String(o.priority)];

async function rule6Exists(o: PolicyRoutingOptions): Promise<boolean> {
  const { stdout } = await run('ip', ['-6', 'rule', 'show', 'priority', String(o.priority)]);
  const want = new RegExp(`fwmark ${hex(o.mark)}/${hex(o.mask)} lookup ${o.table}\\b`);
  return stdout.split('\n').some((l) => want.test(l));
}

export async function ensurePolicyRouting6(o: PolicyRoutingOptions = defaultPolicyRouting): Promise<void> {
  if (!(await rule6Exists(o))) {
    await run('ip', ['-6', 'rule', 'add', ...ruleArgs(o)]).catch(async (e: unknown) => {
      if (!(await rule6Exists(o))) throw e;
    });
  }
  await run('ip', ['-6', 'route', 'replace', 'local', '::/0', 'dev', 'lo', 'table', String(o.table)]);
}

export async function removePolicyRouting6(o: PolicyRoutingOptions = defaultPolicyRouting): Promise<void> {
  while (await rule6Exists(o)) await run('ip', ['-6', 'rule', 'del', ...ruleArgs(o)]);
  await run('ip', ['-6', 'route', 'flush', 'table', String(o.table)]).catch(() => undefined);
}
