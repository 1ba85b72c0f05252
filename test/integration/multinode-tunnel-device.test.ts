/**
 * The tunnel device on this kernel: VXLAN with collect-metadata is there;
 * a tunnelProtocol the kernel has no driver for is refused before anything
 * is created, with a coded error naming the key. Runs in a namespace of its own.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { run } from '../../src/util/exec.js';
import { RoutingError } from '../../src/datapath/routing/errors.js';
import { ensureTunnelDevice, probeTunnelProtocol } from '../../src/datapath/routing/tunnel-device.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('vxlan is probed present; geneve, where the kernel lacks it, is refused as MESHD_ROUTING_TUNNEL_UNSUPPORTED naming tunnelProtocol', async () => {
  requirePrivileges();
  assert.equal(await probeTunnelProtocol('vxlan'), true);
  const geneve = await probeTunnelProtocol('geneve');
  const has = (await run('unshare', ['--net', 'sh', '-c', 'ip link add g type geneve dstport 1 external && echo yes || echo no'])).stdout.trim() === 'yes';
  assert.equal(geneve, has, 'the probe agrees with the kernel');
  if (!geneve) {
    await assert.rejects(
      ensureTunnelDevice({ protocol: 'geneve', port: 6081, mtu: 1450 }),
      (e: unknown) => e instanceof RoutingError && e.code === 'MESHD_ROUTING_TUNNEL_UNSUPPORTED' && e.key === 'tunnelProtocol',
    );
  }
});

test('the agent\'s VXLAN device: collect-metadata on tunnelPort, ARP off, the MTU asked; kept as it is when asked again', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('tdev');
  t.after(() => sb.cleanup());
  const ns = await sb.netns('n');
  const js = `import('${new URL('../../src/datapath/routing/tunnel-device.js', import.meta.url).href}').then(async (m) => { const a = await m.ensureTunnelDevice({ protocol: 'vxlan', port: 8472, mtu: 1450 }); const b = await m.ensureTunnelDevice({ protocol: 'vxlan', port: 8472, mtu: 1450 }); console.log(JSON.stringify([a, b])); })`;
  const out = (await run('nsenter', [`--net=/run/netns/${ns}`, process.execPath, '-e', js])).stdout.trim();
  const [a, b] = z.array(z.object({ ifindex: z.number(), mtu: z.number() })).parse(JSON.parse(out));
  assert.equal(a?.mtu, 1450);
  assert.equal(a?.ifindex, b?.ifindex, 'the second call kept the device');
  const d = (await run('ip', ['-n', ns, '-d', 'link', 'show', 'dev', 'meshd_tunnel'])).stdout;
  assert.match(d, /NOARP/);
  assert.match(d, /vxlan external .*dstport 8472/);
});
