/**
 * dnsProxy.enableTransparentMode=true: the DNS proxy forwards an allowed
 * query from the client pod's own address and port, so the resolver
 * (the real dnsmasq in a kube-system pod, logging every query's source) sees
 * the pod, not the node; the datapath hands the resolver's answer to the
 * proxy's socket rather than to the pod, and the pod gets it from the proxy.
 * REFUSED still comes from the proxy; a pod without DNS rules is untouched.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultPolicyRouting } from '../../src/proxy/policy-routing.js';
import { run } from '../../src/util/exec.js';
import { DnsWorld } from '../helpers/dns-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

/** dnsmasq's log lines (--log-queries=extra) for queries of `name`: "… <serial> <address>/<port> query[A] <name> from <address>". */
function queriesOf(log: string, name: string): Array<{ from: string; port: number | null }> {
  return log
    .split('\n')
    .filter((l) => new RegExp(`query\\[A\\] ${name.replace(/\./g, '\\.')} from `).test(l))
    .map((l) => {
      const m = / (\d+\.\d+\.\d+\.\d+)\/(\d+) query\[/.exec(l);
      return { from: / from (\S+)$/.exec(l)?.[1] ?? '', port: m ? Number(m[2]) : null };
    });
}

test('transparent DNS proxy: the resolver sees the pod, the answer reaches the pod, REFUSED still works, pods without DNS rules untouched', async (t) => {
  requirePrivileges();
  const w = await DnsWorld.create(t, { 'dnsProxy.enableTransparentMode': true });
  await w.dnsmasq({ ttl: 300, logQueries: true });
  const dns = () => {
    const d = w.node.running?.agent.dnsService();
    assert.ok(d, 'the agent runs the DNS proxy');
    return d;
  };
  const web = await w.client('web');
  const other = await w.client('other');
  const server = w.resolver;
  const nodeSide = (await run('ip', ['-4', '-o', 'addr', 'show'])).stdout;

  await t.test('an allowed query reaches the resolver from the pod address, over UDP and TCP; the answer reaches the pod', async () => {
    for (const [proto, name] of [['udp', 'www.example.com'], ['tcp', 'short.example.com']] as const) {
      const before = (await dns().stats());
      const r = await web.call({ op: 'query', server, name, proto });
      assert.equal(r.rcode, 'NOERROR', `${proto}: ${JSON.stringify(r)}`);
      if (name === 'www.example.com') assert.deepEqual(r.answers?.map((a) => [a.type, a.data]), [['CNAME', 'edge.example.net'], ['A', w.inet(2)]]);
      assert.equal((await dns().stats()).allowed - before.allowed, 1, proto);
      assert.equal((await dns().stats()).upstreamErrors - before.upstreamErrors, 0, proto);
      const seen = queriesOf(w.dnsmasqLog(), name);
      assert.ok(seen.length >= 1, `${proto}: dnsmasq logged the query: ${w.dnsmasqLog()}`);
      assert.deepEqual([...new Set(seen.map((s) => s.from))], [w.pods.web.ip], `${proto}: the resolver saw the pod's address`);
      // The pod's own source port, as the proxy received the query, is the one the resolver saw.
      const asked = (await dns().recent()).filter((x) => x.name === name && x.protocol === proto).map((x) => x.client);
      assert.deepEqual(asked, seen.map((x) => `${x.from}:${x.port ?? 'no port logged'}`), `${proto}: the pod's address and port`);
      assert.ok(!nodeSide.includes(` ${w.pods.web.ip}/`), 'the pod address is no address of the host namespace');
    }
    // UDP: the query left from a transparent socket bound to the pod's address (and the pod's port).
    const { stdout } = await run('ss', ['-Hunl', 'src', w.pods.web.ip]);
    assert.match(stdout, new RegExp(`${w.pods.web.ip.replace(/\./g, '\\.')}:\\d+`), `a host socket bound to the pod address: ${stdout}`);
    const udp = queriesOf(w.dnsmasqLog(), 'www.example.com');
    const ports = udp.map((s) => s.port).filter((p): p is number => p !== null);
    t.diagnostic(`dnsmasq: ${w.dnsmasqLog().split('\n').filter((l) => l.includes('query[')).slice(0, 2).join(' | ')}; host sockets: ${stdout.trim()}`);
    assert.ok(ports.length > 0, 'dnsmasq logs the source port');
    assert.ok(stdout.includes(`${w.pods.web.ip}:${ports[0]}`), `a host socket bound to the pod's address and port: ${stdout}`);
  });

  await t.test('many queries in a row: every answer comes back (none lost to the pod)', async () => {
    const before = (await dns().stats());
    for (let i = 0; i < 50; i++) {
      const r = await web.call({ op: 'query', server, name: `n${i % 5}.example.com` });
      assert.equal(r.rcode, 'NOERROR', JSON.stringify(r));
    }
    assert.equal((await dns().stats()).upstreamErrors - before.upstreamErrors, 0);
  });

  await t.test('a name no rule allows is REFUSED by the proxy and never reaches the resolver', async () => {
    const r = await web.call({ op: 'query', server, name: 'api.github.com' });
    assert.equal(r.rcode, 'REFUSED', JSON.stringify(r));
    assert.deepEqual(queriesOf(w.dnsmasqLog(), 'api.github.com').filter((s) => s.from === w.pods.web.ip), []);
  });

  await t.test("the proxy mark's policy routing, removed by someone else, is back at once (no polling)", async () => {
    const { mark, mask, table, priority } = defaultPolicyRouting;
    await run('ip', ['-4', 'rule', 'del', 'fwmark', `0x${mark.toString(16)}/0x${mask.toString(16)}`, 'lookup', String(table), 'priority', String(priority)]);
    const t0 = performance.now();
    let ok = false;
    while (!ok && performance.now() - t0 < 3000) {
      const rules = (await run('ip', ['-4', 'rule', 'show', 'priority', String(priority)])).stdout;
      ok = rules.includes(`lookup ${table}`);
      if (!ok) await sleep(20);
    }
    assert.ok(ok, 'the rule is back within 3 s (the fallback check runs once a minute)');
    t.diagnostic(`policy routing back after ${Math.round(performance.now() - t0)} ms`);
    const r = await web.call({ op: 'query', server, name: 'www.example.com' });
    assert.equal(r.rcode, 'NOERROR', JSON.stringify(r));
  });

  await t.test('a transparent socket with nothing in flight is closed after 10 s without a query', async () => {
    const bound = async () => (await run('ss', ['-Hunl', 'src', w.pods.web.ip])).stdout.trim();
    const r = await web.call({ op: 'query', server, name: 'short2.example.com' });
    assert.equal(r.rcode, 'NOERROR', JSON.stringify(r));
    assert.notEqual(await bound(), '', 'open right after the query');
    const t0 = performance.now();
    while ((await bound()) !== '' && performance.now() - t0 < 14_000) await sleep(250);
    const left = Math.round(performance.now() - t0);
    assert.equal(await bound(), '', 'closed');
    assert.ok(left >= 8_000, `not before its idle time (closed after ${left} ms)`);
  });

  await t.test('a pod without DNS rules is not redirected and resolves directly', async () => {
    const before = (await dns().stats());
    const r = await other.call({ op: 'query', server, name: 'other.example.org' });
    assert.equal(r.rcode, 'NOERROR', JSON.stringify(r));
    assert.equal((await dns().stats()).queries, before.queries, 'the proxy saw none of it');
    assert.deepEqual([...new Set(queriesOf(w.dnsmasqLog(), 'other.example.org').map((s) => s.from))], [w.pods.other.ip]);
  });
});
