import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import { CniCode, CniError, formatResult, parseEnv, parseNetConf, type CniResult } from './cni-spec.js';

/** A matcher for assert.throws: a CniError with this stable code and spec number whose message names `names`. */
function cniFails(code: string, cniCode: number, names?: string): (e: unknown) => boolean {
  return (e) => isMeshdError(e, code) && e instanceof CniError && e.cniCode === cniCode && (names === undefined || e.message.includes(names));
}

test('parseEnv: ADD needs container ID, netns and ifname; DEL tolerates a missing netns; GC/STATUS/VERSION need none', () => {
  const base = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin:/usr/lib/cni' };
  const env = parseEnv({ ...base, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p' });
  assert.deepEqual(env.args, { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'ns', K8S_POD_NAME: 'p' });
  assert.deepEqual(env.path, ['/opt/cni/bin', '/usr/lib/cni']);
  const badEnv = (names: string) => cniFails('MESHD_CNI_BAD_ENV', CniCode.INVALID_ENV, names);
  assert.throws(() => parseEnv({ ...base, CNI_NETNS: undefined }), badEnv('CNI_NETNS'));
  assert.equal(parseEnv({ ...base, CNI_COMMAND: 'DEL', CNI_NETNS: undefined }).netns, '');
  assert.throws(() => parseEnv({ ...base, CNI_IFNAME: 'eth 0' }), badEnv('CNI_IFNAME'));
  assert.throws(() => parseEnv({ ...base, CNI_IFNAME: 'averyveryverylongname' }), badEnv('CNI_IFNAME'));
  assert.throws(() => parseEnv({ ...base, CNI_CONTAINERID: '-bad' }), badEnv('CNI_CONTAINERID'));
  assert.throws(() => parseEnv({ ...base, CNI_ARGS: 'novalue' }), badEnv('CNI_ARGS'));
  for (const c of ['GC', 'STATUS', 'VERSION']) assert.equal(parseEnv({ CNI_COMMAND: c }).command, c);
  assert.throws(() => parseEnv({}), badEnv('CNI_COMMAND'));
});

test('parseNetConf: decode, version and schema errors carry the spec codes and name the field', () => {
  assert.throws(() => parseNetConf('{'), cniFails('MESHD_CNI_BAD_JSON', CniCode.DECODE_FAILURE));
  assert.throws(() => parseNetConf('"x"'), cniFails('MESHD_CNI_BAD_JSON', CniCode.DECODE_FAILURE));
  assert.throws(
    () => parseNetConf('{"cniVersion":"0.3.1","name":"n","type":"meshd-cni"}'),
    cniFails('MESHD_CNI_UNSUPPORTED_VERSION', CniCode.INCOMPATIBLE_VERSION, '0.3.1'),
  );
  assert.throws(() => parseNetConf('{"cniVersion":"1.0.0","type":"meshd-cni"}'), cniFails('MESHD_CNI_BAD_CONFIG', CniCode.INVALID_CONFIG, 'name'));
  assert.throws(
    () => parseNetConf('{"cniVersion":"1.0.0","name":"n","type":"meshd-cni","chainingMode":"magic"}'),
    cniFails('MESHD_CNI_BAD_CONFIG', CniCode.INVALID_CONFIG, 'chainingMode'),
  );
  const ok = parseNetConf('{"cniVersion":"0.4.0","name":"n","type":"meshd-cni","custom":1}');
  assert.equal(ok.agentSocket, '/var/run/meshd/cni.sock');
  assert.equal(ok.chainingMode, 'none');
});

test('the error JSON carries the spec number as code and the stable code in details', () => {
  const e = new CniError(CniCode.AGENT_REJECTED, 'MESHD_CNI_AGENT_REJECTED', 'agent said no', 'MESHD_CNI_API_REJECTED');
  assert.deepEqual(e.toJSON('1.1.0'), { cniVersion: '1.1.0', code: 101, msg: 'agent said no', details: 'MESHD_CNI_AGENT_REJECTED: MESHD_CNI_API_REJECTED' });
  assert.equal(new CniError(CniCode.IO_FAILURE, 'MESHD_CNI_INTERNAL', 'x').toJSON('0.4.0').details, 'MESHD_CNI_INTERNAL');
  assert.equal(e.kind, 'invalid');
  assert.equal(new CniError(CniCode.TRY_AGAIN_LATER, 'MESHD_CNI_AGENT_UNAVAILABLE', 'x').kind, 'unavailable');
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
