/**
 * `meshd datapath status|flows` against a datapath written by the endpoint
 * manager in a private pin directory.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { native } from '../../native/index.js';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import { buildFrame, TcAct } from '../../src/datapath/packet.js';
import { CommandError, run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { requirePrivileges } from '../helpers/privileged.js';

const meshd = repoPath('bin', 'meshd.mjs');

test('meshd datapath status reports endpoints, entries and config; flows streams a drop as it happens', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('dpcli');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const dp = await EndpointManager.open({ pinDir: pins.path, config: { verdictSample: 1 } });
  t.after(() => dp.close());
  await dp.addEndpoint({ endpointId: 'cli/pod', ifname: 'lo', identity: 700, attach: false });
  dp.syncIpcache([
    { prefix: '10.8.0.2/32', identity: 700 },
    { prefix: '10.8.0.3/32', identity: 800 },
    { prefix: '10.9.0.0/16', identity: 900 },
  ]);
  dp.updatePolicy({
    endpointId: 'cli/pod',
    identity: 700,
    ingress: { defaultDeny: false, entries: [] },
    egress: { defaultDeny: true, entries: [{ remoteIdentity: 800, protocol: 6, port: 80, endPort: 90, verdict: 'ALLOW', derivedFrom: ['cli'] }] },
    revision: 1,
  });

  const { stdout } = await run(process.execPath, [meshd, 'datapath', 'status', '--pin-dir', pins.path, '-o', 'json']);
  const st: unknown = JSON.parse(stdout);
  assert.ok(typeof st === 'object' && st !== null && 'endpoints' in st && 'ipcache' in st && 'config' in st);
  assert.deepEqual(st.endpoints, [{ ifindex: 1, epId: 1, identity: 700, defaultDenyIngress: false, defaultDenyEgress: true, policyGeneration: 1, policyEntries: 3 }]);
  assert.ok(typeof st.ipcache === 'object' && st.ipcache !== null && 'sample' in st.ipcache && Array.isArray(st.ipcache.sample));
  assert.deepEqual({ ...st.ipcache, sample: undefined }, { prefixes: 1, addresses: 2, sample: undefined });
  assert.deepEqual(
    [...st.ipcache.sample].map((x: unknown) => JSON.stringify(x)).sort(),
    ['{"prefix":"10.8.0.2/32","identity":700}', '{"prefix":"10.8.0.3/32","identity":800}', '{"prefix":"10.9.0.0/16","identity":900}'],
  );
  const yaml = await run(process.execPath, [meshd, 'datapath', 'status', '--pin-dir', pins.path, '-o', 'yaml']);
  assert.deepEqual(parseYaml(yaml.stdout), st, '-o yaml carries the same data as -o json');
  const text = await run(process.execPath, [meshd, 'datapath', 'status', '--pin-dir', pins.path]);
  assert.match(text.stdout, /new connections: egress 0 allowed/);
  assert.match(text.stdout, /endpoint 1 \(ifindex 1, identity 700\): 3 policy entries, default deny egress, generation 1/);

  const flows = spawn(process.execPath, [meshd, 'datapath', 'flows', '--pin-dir', pins.path, '--count', '1', '-o', 'json']);
  t.after(() => flows.kill('SIGKILL'));
  let out = '';
  flows.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<number | null>((resolve) => flows.on('exit', resolve));
  await new Promise((r) => setTimeout(r, 500)); // the reader is attached
  const drop = native.progTestRun(dp.programFds().fromPod, buildFrame({ src: '10.8.0.2', dst: '10.8.0.3', proto: 6, sport: 5555, dport: 22 }));
  assert.equal(drop.retval, TcAct.SHOT);
  assert.equal(await exited, 0);
  const rec: unknown = JSON.parse(out.trim().split('\n')[0] ?? '');
  assert.ok(typeof rec === 'object' && rec !== null);
  assert.deepEqual(
    { ...rec, monotonicNs: undefined, ifindex: undefined },
    {
      monotonicNs: undefined,
      ifindex: undefined,
      type: 'drop',
      dropReason: 'POLICY_DEFAULT_DENY',
      direction: 'egress',
      verdict: 'DENY',
      endpointNumericId: 1,
      srcIdentity: 700,
      dstIdentity: 800,
      family: 4,
      protocol: 6,
      src: { ip: '10.8.0.2', port: 5555 },
      dst: { ip: '10.8.0.3', port: 22 },
    },
  );

  const after = await run(process.execPath, [meshd, 'datapath', 'status', '--pin-dir', pins.path]);
  assert.match(after.stdout, /dropped egress POLICY_DEFAULT_DENY: 1/);

  await assert.rejects(run(process.execPath, [meshd, 'datapath', 'bogus']), (e: unknown) => e instanceof CommandError && e.exitCode === 2 && /^MESHD_CLI_USAGE: /.test(e.stderr));
  for (const sub of ['status', 'flows']) {
    await assert.rejects(
      run(process.execPath, [meshd, 'datapath', sub, '--pin-dir', `${pins.path}-missing`]),
      (e: unknown) => e instanceof CommandError && e.exitCode === 1 && /^MESHD_DATAPATH_MAPS_UNREADABLE: /.test(e.stderr),
    );
  }
});
