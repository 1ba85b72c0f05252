/**
 * IPv6 DNS flows through the proxy: dual-stack pods (an IPv6 address beside
 * meshd-cni's IPv4 one, registered with the agent) ask the resolver at its
 * IPv6 address. The datapath's IPv6 redirect hands the queries to the proxy
 * ([::1]:port, the proxy's socket on [::]) and the proxy mark's IPv6 policy
 * routing delivers them: an allowed name is answered (UDP and TCP), a denied
 * one REFUSED by the proxy, a pod without DNS rules is not redirected, and
 * an allowed AAAA answer for a toFQDNs name puts its address into the
 * kernel's ipcache and the pod's policy map on the selector's port.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultPolicyRouting } from '../../src/proxy/policy-routing.js';
import { run } from '../../src/util/exec.js';
import { DnsWorld } from '../helpers/dns-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('IPv6: a dual-stack pod asks an IPv6 resolver through the proxy; allowed answered, denied REFUSED, AAAA opened in the kernel', async (t) => {
  requirePrivileges();
  const w = await DnsWorld.create(t);
  const agent = () => {
    const a = w.node.running?.agent;
    assert.ok(a);
    return a;
  };
  const dns = () => {
    const d = agent().dnsService();
    assert.ok(d, 'the agent runs the DNS proxy');
    return d;
  };
  await w.dualStack('coredns', w.pod6(0x53));
  await w.dualStack('app', w.pod6(0x10));
  await w.dualStack('web', w.pod6(0x11));
  await w.dualStack('other', w.pod6(0x12));
  await w.dnsmasq({ ttl: 300, listen: [w.resolver6] });
  const server = w.resolver6;
  const web = await w.client('web');
  const app = await w.client('app');
  const other = await w.client('other');

  await t.test('the proxy listens on IPv6 and the IPv6 policy routing is installed', async () => {
    assert.equal((await dns().stats()).ipv6, true);
    const { mark, mask, table, priority } = defaultPolicyRouting;
    const rules = (await run('ip', ['-6', 'rule', 'show', 'priority', String(priority)])).stdout;
    assert.match(rules, new RegExp(`fwmark 0x${mark.toString(16)}/0x${mask.toString(16)} lookup ${table}`));
    assert.match((await run('ip', ['-6', 'route', 'show', 'table', String(table)])).stdout, /local default dev lo|local ::\/0 dev lo/);
  });

  await t.test('an allowed name is answered over UDP and TCP; a denied one REFUSED by the proxy', async () => {
    for (const proto of ['udp', 'tcp'] as const) {
      const before = (await dns().stats());
      const ok = await web.call({ op: 'query', server, name: 'six.example.com', type: 'AAAA', proto });
      assert.equal(ok.rcode, 'NOERROR', `${proto}: ${JSON.stringify(ok)}`);
      assert.deepEqual(ok.answers?.map((a) => [a.type, a.data]), [['AAAA', w.inet6(7)]]);
      const no = await web.call({ op: 'query', server, name: 'api.github.com', type: 'AAAA', proto });
      assert.equal(no.rcode, 'REFUSED', `${proto}: ${JSON.stringify(no)}`);
      const after = (await dns().stats());
      assert.equal(after.allowed - before.allowed, 1, proto);
      assert.equal(after.rejected - before.rejected, 1, proto);
    }
    const rec = (await dns().recent()).filter((r) => r.endpointId === 'default/web');
    assert.deepEqual(
      rec.map((r) => [r.protocol, r.name, r.verdict, r.server.startsWith(`${server}:`), r.client.startsWith(`${w.pod6(0x11)}:`)]),
      [
        ['udp', 'six.example.com', 'allowed', true, true],
        ['udp', 'api.github.com', 'rejected', true, true],
        ['tcp', 'six.example.com', 'allowed', true, true],
        ['tcp', 'api.github.com', 'rejected', true, true],
      ],
    );
  });

  await t.test('a pod without DNS rules asks the IPv6 resolver directly', async () => {
    const before = (await dns().stats()).queries;
    const r = await other.call({ op: 'query', server, name: 'api.github.com', type: 'A' });
    assert.equal(r.rcode, 'NOERROR', JSON.stringify(r));
    assert.equal((await dns().stats()).queries, before, 'the proxy saw none of it');
  });

  await t.test('an AAAA answer for a toFQDNs name: its /128 identity in the kernel ipcache and the pod policy map on 443', async () => {
    const r = await app.call({ op: 'query', server, name: 'six.example.com', type: 'AAAA' });
    assert.equal(r.rcode, 'NOERROR', JSON.stringify(r));
    const id = agent().engine.identityOfIp(w.inet6(7));
    assert.ok(id > 255, `a CIDR identity of its own: ${id}`);
    assert.ok(agent().engine.ipcache().some((c) => c.prefix === `${w.inet6(7)}/128` && c.identity === id));
    const [head = '', tail = ''] = w.inet6(7).split('::');
    const groups = [...head.split(':'), ...Array.from({ length: 8 - head.split(':').length - tail.split(':').length }, () => '0'), ...tail.split(':')];
    const hex = groups.map((h) => h.padStart(4, '0')).join('');
    assert.equal(hex.length, 32);
    const rows = w.node.pinnedRows(['meshd_ipc_host']).meshd_ipc_host ?? [];
    assert.ok(rows.some((row) => (row.split('=')[0] ?? '').includes(hex)), `the kernel's ipcache has ${w.inet6(7)}`);
    const pol = agent().kernelPolicy('default/app');
    assert.ok(pol);
    const entries = [...pol.entries.values()];
    assert.ok(
      entries.some(({ key, value }) => key.egress && key.identity === id && key.port === 443 && value.verdict !== 'DENY'),
      'the policy map opens 443 for it',
    );
    assert.ok(!entries.some(({ key }) => key.egress && key.identity === id && key.port === 80), 'and no other port');
  });
});
