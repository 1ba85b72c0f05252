/**
 * Policy routing that delivers connections the datapath assigned to the
 * proxy (bpf_sk_assign, packet marked `mark/mask`) to the local stack:
 *
 *   ip rule add fwmark 0xb00/0xf00 lookup 2004 priority 9
 *   ip route replace local 0.0.0.0/0 dev lo table 2004
 *
 * Without them the assignment succeeds and the SYN is silently dropped
 * (docs/datapath.md). `ensurePolicyRouting` is idempotent (the rule is added
 * only if an identical one is missing; the route is replaced); the agent
 * leaves both in place when it stops, so the kernel keeps delivering to the
 * proxy across agent restarts. `removePolicyRouting` is for tests and
 * uninstall. The `6` variants do the same for IPv6 (`ip -6 rule … lookup 2004`,
 * `local ::/0 dev lo table 2004`), which the DNS proxy needs for pods' IPv6
 * DNS flows (it answers on [::1]:port, where the datapath's IPv6 redirect
 * looks); same mark, table and priority. A node with IPv6 disabled has
 * nothing to route: ensurePolicyRouting6 fails, and the caller serves IPv4.
 */
import { Mark } from '../datapath/abi.js';
import { run } from '../util/exec.js';

export interface PolicyRoutingOptions {
  mark: number;
  mask: number;
  table: number;
  priority: number;
}

export const defaultPolicyRouting: PolicyRoutingOptions = { mark: Mark.MAGIC_PROXY, mask: Mark.MAGIC_MASK, table: 2004, priority: 9 };

const hex = (n: number): string => `0x${n.toString(16)}`;

function ruleArgs(o: PolicyRoutingOptions): string[] {
  return ['fwmark', `${hex(o.mark)}/${hex(o.mask)}`, 'lookup', String(o.table), 'priority', String(o.priority)];
}

type Family = 4 | 6;

async function ruleExists(o: PolicyRoutingOptions, family: Family): Promise<boolean> {
  const { stdout } = await run('ip', [`-${family}`, 'rule', 'show', 'priority', String(o.priority)]);
  const want = new RegExp(`fwmark ${hex(o.mark)}/${hex(o.mask)} lookup ${o.table}\\b`);
  return stdout.split('\n').some((l) => want.test(l));
}

async function ensureFamily(o: PolicyRoutingOptions, family: Family): Promise<void> {
  if (!(await ruleExists(o, family))) {
    // The proxy manager and the DNS proxy both ensure it at start: the other may add it between the look and the add.
    await run('ip', [`-${family}`, 'rule', 'add', ...ruleArgs(o)]).catch(async (e: unknown) => {
      if (!(await ruleExists(o, family))) throw e;
    });
  }
  await run('ip', [`-${family}`, 'route', 'replace', 'local', family === 4 ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', String(o.table)]);
}

async function removeFamily(o: PolicyRoutingOptions, family: Family): Promise<void> {
  while (await ruleExists(o, family)) await run('ip', [`-${family}`, 'rule', 'del', ...ruleArgs(o)]);
  // ip fails when the table is already empty or was never created: the state removal wants.
  await run('ip', [`-${family}`, 'route', 'flush', 'table', String(o.table)]).catch(() => undefined);
}

export const ensurePolicyRouting = (o: PolicyRoutingOptions = defaultPolicyRouting): Promise<void> => ensureFamily(o, 4);
export const removePolicyRouting = (o: PolicyRoutingOptions = defaultPolicyRouting): Promise<void> => removeFamily(o, 4);
export const ensurePolicyRouting6 = (o: PolicyRoutingOptions = defaultPolicyRouting): Promise<void> => ensureFamily(o, 6);
export const removePolicyRouting6 = (o: PolicyRoutingOptions = defaultPolicyRouting): Promise<void> => removeFamily(o, 6);
