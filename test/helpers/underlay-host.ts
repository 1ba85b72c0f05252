/**
 * A machine on the netns-nodes underlay that is no node of the cluster (a
 * `world` client to every node): a network namespace of its own with an
 * `eth0` on the underlay's bridge, an address there, and routes to the pod
 * CIDRs of chosen nodes through those nodes' underlay addresses. Made through
 * a Sandbox (its namespace is recorded for the runner's leak check) and
 * removed first in the nodes' cleanup.
 *
 *   const ext = await underlayHost(w, 'x', '192.168.77.200', [n2]);
 *   await tryConnect(ext, web.ip, 8080);
 */
import { run } from '../../src/util/exec.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import type { NetnsNode, NetnsNodes } from './netns-nodes.js';

export async function underlayHost(w: NetnsNodes, suffix: string, ip: string, via: readonly NetnsNode[]): Promise<string> {
  const sb = new Sandbox('ulh');
  w.defer(() => sb.cleanup());
  const ns = await sb.netns(suffix);
  const [a, b] = [sb.name('a'), sb.name('b')];
  await run('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
  await run('ip', ['link', 'set', a, 'netns', ns]);
  await run('ip', ['link', 'set', b, 'netns', w.underlay]);
  await run('ip', ['-n', ns, 'link', 'set', a, 'name', 'eth0']);
  await run('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
  await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['-n', w.underlay, 'link', 'set', b, 'master', 'br0', 'up']);
  for (const n of via) await run('ip', ['-n', ns, 'route', 'add', n.podCidr, 'via', n.ip]);
  return ns;
}
