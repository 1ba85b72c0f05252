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
 * uninstall. IPv4 only (the proxy listeners bind 127.0.0.1).
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

async function ruleExists(o: PolicyRoutingOptions): Promise<boolean> {
  const { stdout } = await run('ip', ['-4', 'rule', 'show', 'priority', String(o.priority)]);
  const want = new RegExp(`fwmark ${hex(o.mark)}/${hex(o.mask)} lookup ${o.table}\\b`);
  return stdout.split('\n').some((l) => want.test(l));
}

export async function ensurePolicyRouting(o: PolicyRoutingOptions = defaultPolicyRouting): Promise<void> {
  if (!(await ruleExists(o))) {
    // The proxy manager and the DNS proxy both ensure it at start: the other may add it between the look and the add.
    await run('ip', ['-4', 'rule', 'add', ...ruleArgs(o)]).catch(async (e: unknown) => {
      if (!(await ruleExists(o))) throw e;
    });
  }
  await run('ip', ['-4', 'route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(o.table)]);
}

export async function removePolicyRouting(o: PolicyRoutingOptions = defaultPolicyRouting): Promise<void> {
  while (await ruleExists(o)) await run('ip', ['-4', 'rule', 'del', ...ruleArgs(o)]);
  // ip fails when the table is already empty or was never created: the state removal wants.
  await run('ip', ['-4', 'route', 'flush', 'table', String(o.table)]).catch(() => undefined);
}
