import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CniError, formatResult, parseEnv, parseNetConf, type CniResult } from './cni-spec.js';

function cniError(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return e;
    throw e;
  }
  assert.fail('expected a CniError');
}

test('parseEnv: ADD needs container ID, netns and ifname; DEL tolerates a missing netns; GC/STATUS/VERSION need none', () => {
  const base = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin:/usr/lib/cni' };
  const env = parseEnv({ ...base, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p' });
  assert.deepEqual(env.args, { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'ns', K8S_POD_NAME: 'p' });
  assert.deepEqual(env.path, ['/opt/cni/bin', '/usr/lib/cni']);
  assert.equal(cniError(() => parseEnv({ ...base, CNI_NETNS: undefined })).cniCode, 4);
  assert.equal(parseEnv({ ...base, CNI_COMMAND: 'DEL', CNI_NETNS: undefined }).netns, '');
  assert.match(cniError(() => parseEnv({ ...base, CNI_IFNAME: 'eth 0' })).message, /CNI_IFNAME/);
  assert.match(cniError(() => parseEnv({ ...base, CNI_IFNAME: 'averyveryverylongname' })).message, /CNI_IFNAME/);
  assert.match(cniError(() => parseEnv({ ...base, CNI_CONTAINERID: '-bad' })).message, /CNI_CONTAINERID/);
  assert.match(cniError(() => parseEnv({ ...base, CNI_ARGS: 'novalue' })).message, /CNI_ARGS/);
  for (const c of ['GC', 'STATUS', 'VERSION']) assert.equal(parseEnv({ CNI_COMMAND: c }).command, c);
  assert.equal(cniError(() => parseEnv({})).cniCode, 4);
});

test('parseNetConf: decode, version and schema errors carry the spec codes and name the field', () => {
  assert.equal(cniError(() => parseNetConf('{')).cniCode, 6);
  assert.equal(cniError(() => parseNetConf('"x"')).cniCode, 6);
  const v = cniError(() => parseNetConf('{"cniVersion":"0.3.1","name":"n","type":"meshd-cni"}'));
  assert.equal(v.cniCode, 1);
  assert.equal(v.reason, 'MESHD_CNI_UNSUPPORTED_VERSION');
  const missing = cniError(() => parseNetConf('{"cniVersion":"1.0.0","type":"meshd-cni"}'));
  assert.equal(missing.cniCode, 7);
  assert.match(missing.message, /name/);
  const wrong = cniError(() => parseNetConf('{"cniVersion":"1.0.0","name":"n","type":"meshd-cni","chainingMode":"magic"}'));
  assert.match(wrong.message, /chainingMode/);
  const ok = parseNetConf('{"cniVersion":"0.4.0","name":"n","type":"meshd-cni","custom":1}');
  assert.equal(ok.agentSocket, '/var/run/meshd/cni.sock');
  assert.equal(ok.chainingMode, 'none');
  assert.deepEqual(cniError(() => parseNetConf('{')).toJSON('1.1.0').code, 6);
});

test('formatResult: 0.4.0 adds ips[].version and drops 1.1.0-only fields; 1.x has no version', () => {
  const r: CniResult = {
    interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/x', mtu: 1400 }],
    ips: [
      { address: '10.244.1.2/32', gateway: '10.244.1.1', interface: 0 },
      { address: 'fd00::2/128', interface: 0 },
    ],
    routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1', mtu: 1400 }],
  };
  const v04 = JSON.parse(formatResult(r, '0.4.0')) as Record<string, Array<Record<string, unknown>>>;
  assert.deepEqual(v04.ips?.map((i) => i.version), ['4', '6']);
  assert.equal(v04.interfaces?.[0]?.mtu, undefined);
  assert.equal(v04.routes?.[0]?.mtu, undefined);
  const v10 = JSON.parse(formatResult({ ...r, ips: [{ ...r.ips![0]!, version: '4' }] }, '1.0.0')) as Record<string, Array<Record<string, unknown>>>;
  assert.equal(v10.ips?.[0]?.version, undefined);
  const v11 = JSON.parse(formatResult(r, '1.1.0')) as Record<string, unknown> & { interfaces: Array<Record<string, unknown>> };
  assert.equal(v11.cniVersion, '1.1.0');
  assert.equal(v11.interfaces[0]?.mtu, 1400);
});
