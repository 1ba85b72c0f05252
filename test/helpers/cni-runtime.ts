/**
 * CNI test fixtures around the container runtime of src/devcluster/cni-runtime.ts
 * (re-exported here): meshd-cni installed into a temp dir with an endpoint API
 * server standing in for the agent, test subnets, and what a test inspects.
 *
 *   const rt = new CniRuntime([binDir, '/usr/lib/cni']);
 *   const res = await rt.exec('meshd-cni', 'ADD', { containerId: 'c1', netns, ifname: 'eth0' }, conf);
 *   const result = await rt.addList(conflist, att);  await rt.delList(conflist, att);
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EndpointApiServer, MemoryEndpointHandler, type EndpointHandler } from '../../src/cni/endpoint-api-server.js';
import { installCni } from '../../src/cni/installer.js';
import { CniRuntime } from '../../src/devcluster/cni-runtime.js';
import { tempDir } from '../../src/devcluster/temp.js';
import { claim } from './claim.js';

export { asResult, CniRuntime, firstAddress, hostSide, type Attachment, type Conflist, type ExecResult, type PluginConf } from '../../src/devcluster/cni-runtime.js';
export { tempDir };

const subnets = new Map<number, number>();

/**
 * A pod subnet for this process, 10.244.<n>.0/24 with n in 100..249, distinct per `slot` and
 * from every other test process's (claimed: claim.ts; held until the process ends).
 */
export function testSubnet(slot: number): { cidr: string; prefix: string } {
  let n = subnets.get(slot);
  if (n === undefined) {
    n = 100 + claim('subnet', 150).index;
    subnets.set(slot, n);
  }
  return { cidr: `10.244.${n}.0/24`, prefix: `10.244.${n}.` };
}

/**
 * meshd-cni as a runtime would find it: installed by the installer into a
 * temp CNI bin dir (so the launcher is what runs), an endpoint API server on
 * a temp socket standing in for the agent, state in a temp dir.
 */
export async function meshdCniFixture(label: string, opts: { handler?: EndpointHandler; startServer?: boolean } = {}) {
  const tmp = tempDir(label);
  const binDir = join(tmp.dir, 'bin');
  const confDir = join(tmp.dir, 'net.d');
  const stateDir = join(tmp.dir, 'state');
  const socket = join(tmp.dir, 'run', 'cni.sock');
  installCni({ confDir, binDir, exclusive: false, agentSocket: socket, stateDir });
  const handler = opts.handler ?? new MemoryEndpointHandler();
  const server = new EndpointApiServer({ socketPath: socket, handler });
  if (opts.startServer !== false) await server.start();
  const runtime = new CniRuntime([binDir, '/usr/lib/cni']);
  return {
    dir: tmp.dir,
    binDir,
    confDir,
    stateDir,
    socket,
    server,
    handler,
    runtime,
    /** A meshd-cni plugin configuration (as the runtime streams it) with meshd IPAM on `subnet`. */
    conf(subnet: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
      return { cniVersion: '1.1.0', name: 'meshd', type: 'meshd-cni', agentSocket: socket, stateDir, ipam: { type: 'meshd', subnet }, ...extra };
    },
    async cleanup(): Promise<void> {
      await server.close();
      tmp.remove();
    },
  };
}

/**
 * meshd-cni's host ends (`lxc…`) that belong to containers of this test process: the plugin sets
 * each host link's alias to "meshd-cni:<containerId>/<ifname>", and the tests' container ids carry
 * the process id, so veths of other processes running at the same time are not counted.
 */
export function hostVeths(): string[] {
  const mine = `-${process.pid}-`;
  return readdirSync('/sys/class/net').filter((n) => {
    if (!n.startsWith('lxc')) return false;
    try {
      return readFileSync(`/sys/class/net/${n}/ifalias`, 'utf8').includes(mine);
    } catch {
      return false; // gone meanwhile
    }
  });
}

/** Every file under `dir`, relative paths, sorted. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return; // no such directory: nothing under it
    }
    for (const n of names) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p, join(rel, n));
      else out.push(join(rel, n));
    }
  };
  walk(dir, '');
  return out.sort();
}
