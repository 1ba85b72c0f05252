/**
 * The DNS proxy and toFQDNs end to end: the agent (standalone) on the shipped
 * examples examples/policies/l3-fqdn.yaml and l7-dns.yaml, pods through
 * meshd-cni, the real dnsmasq as the cluster resolver in a kube-system pod,
 * servers in an "internet" namespace.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { DnsService } from '../../src/dns/dns-service.js';
import { repoPath } from '../../src/util/paths.js';
import { DnsWorld } from '../helpers/dns-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('DNS proxy and toFQDNs: rules, REFUSED, no redirect without DNS rules, exact IPs, TTL, expiry, no race, TCP, CLI and trace', async (t) => {
  requirePrivileges();
  const w = await DnsWorld.create(t);
  const agent = () => {
    const a = w.node.running?.agent;
    assert.ok(a);
    return a;
  };
  const dns = (): DnsService => {
    const d = agent().dnsService();
    assert.ok(d, `the agent runs the DNS proxy; its log: ${w.node.logs.filter((l) => l.includes('DNS proxy')).join('\n')}`);
    return d;
  };
  await w.dnsmasq({ ttl: 300 });
  const app = await w.client('app');
  const web = await w.client('web');
  const other = await w.client('other');
  const server = w.resolver;
  /** Whether the kernel's ipcache (whole addresses, read from the pin) has an entry for an IPv4 address. */
  const kernelIpcacheHas = (ip: string): boolean => {
    const hex = Buffer.from(ip.split('.').map(Number)).toString('hex');
    return (w.node.pinnedRows(['meshd_ipc_host']).meshd_ipc_host ?? []).some((row) => (row.split('=')[0] ?? '').includes(hex));
  };
  const cli = async (...args: string[]) => {
    const { stdout } = await promisify(execFile)(process.execPath, [repoPath('bin', 'meshd.mjs'), ...args, '-o', 'json', '--api-socket', agent().socketPath('meshd')]);
    return JSON.parse(stdout) as unknown;
  };

  await t.test('allowed names resolve through the proxy; others get REFUSED from the proxy, over UDP and TCP', async () => {
    for (const proto of ['udp', 'tcp']) {
      const before = (await dns().stats());
      const ok = await web.call({ op: 'query', server, name: 'www.example.com', proto });
      assert.equal(ok.rcode, 'NOERROR', JSON.stringify(ok));
      assert.deepEqual(ok.answers?.map((a) => [a.type, a.data]), [['CNAME', 'edge.example.net'], ['A', w.inet(2)]]);
      // dnsmasq knows api.github.com; l7-dns.yaml does not allow it for web: the proxy answers itself.
      const no = await web.call({ op: 'query', server, name: 'api.github.com', proto });
      assert.equal(no.rcode, 'REFUSED', JSON.stringify(no));
      assert.deepEqual(no.answers, []);
      const after = (await dns().stats());
      assert.equal(after.allowed - before.allowed, 1, proto);
      assert.equal(after.rejected - before.rejected, 1, proto);
    }
    assert.ok((await dns().stats()).tcpConnections >= 2);
    const rec = (await dns().recent()).filter((r) => r.endpointId === 'default/web');
    assert.deepEqual(
      rec.map((r) => [r.protocol, r.name, r.verdict]),
      [
        ['udp', 'www.example.com', 'allowed'],
        ['udp', 'api.github.com', 'rejected'],
        ['tcp', 'www.example.com', 'allowed'],
        ['tcp', 'api.github.com', 'rejected'],
      ],
    );
  });

  await t.test('an endpoint without DNS rules is never redirected', async () => {
    const before = (await dns().stats()).queries;
    const r = await other.call({ op: 'query', server, name: 'api.github.com' });
    assert.equal(r.rcode, 'NOERROR');
    const r2 = await other.call({ op: 'query', server, name: 'api.github.com', proto: 'tcp' });
    assert.equal(r2.rcode, 'NOERROR');
    assert.equal((await dns().stats()).queries, before, 'the proxy saw none of them');
    const redirects = agent().recentFlows().filter((f) => f.type === 'redirect' && f.src.ip === w.pods.other.ip);
    assert.deepEqual(redirects, []);
  });

  await t.test('toFQDNs opens exactly the resolved IPs on the allowed port; another name stays dropped', async () => {
    // Before any answer the IP is world: dropped.
    assert.equal((await app.call({ op: 'connect', ip: w.inet(1), port: 443, timeoutMs: 1000 })).connect, 'timeout');
    const r = await app.call({ op: 'resolveConnect', server, name: 'api.github.com', port: 443 });
    assert.equal(r.rcode, 'NOERROR');
    assert.equal(r.connect, `INET 443 ${w.pods.app.ip}`);
    // Not on another port.
    assert.equal((await app.call({ op: 'connect', ip: w.inet(1), port: 80, timeoutMs: 1000 })).connect, 'timeout');
    // app may resolve other.example.org (matchPattern "*"), but toFQDNs does not select it.
    const o = await app.call({ op: 'resolveConnect', server, name: 'other.example.org', port: 443, timeoutMs: 1000 });
    assert.equal(o.rcode, 'NOERROR');
    assert.equal(o.connect, 'timeout');
    // As in Cilium, a name no toFQDNs selector matches gets no identity: cached, but neither in the engine's nor the kernel's ipcache.
    assert.deepEqual(dns().list('default/app').find((x) => x.name === 'other.example.org')?.ips.map((i) => i.ip), [w.inet(3)]);
    assert.equal(agent().engine.identityOfIp(w.inet(3)), 2, 'world');
    assert.ok(!agent().engine.ipcache().some((x) => x.prefix === `${w.inet(3)}/32`));
    assert.equal(kernelIpcacheHas(w.inet(3)), false);
    assert.equal(kernelIpcacheHas(w.inet(1)), true, 'the address of a selected name is there');
    // Through a CNAME: www.example.com (matches *.example.com) → edge.example.net's address.
    const c = await app.call({ op: 'resolveConnect', server, name: 'www.example.com', port: 443 });
    assert.equal(c.ip, w.inet(2));
    assert.equal(c.connect, `INET 443 ${w.pods.app.ip}`);
    // web resolved www.example.com too, but has no toFQDNs: still dropped for it.
    assert.equal((await web.call({ op: 'connect', ip: w.inet(2), port: 443, timeoutMs: 1000 })).connect, 'timeout');
  });

  await t.test('meshd fqdn cache list and meshd policy trace agree with the kernel and the proxy', async () => {
    const list = (await cli('fqdn', 'cache', 'list', '--endpoint', 'default/app')) as { proxy: { port: number }; entries: Array<{ endpoint: string; name: string; ips: Array<{ ip: string; ttl: number; source: string }> }> };
    assert.equal(list.proxy.port, dns().port);
    const byName = Object.fromEntries(list.entries.map((e) => [e.name, e.ips.map((i) => [i.ip, i.ttl, i.source])]));
    assert.deepEqual(byName['api.github.com'], [[w.inet(1), 300, 'dns']]);
    assert.deepEqual(byName['www.example.com'], [[w.inet(2), 300, 'dns']]);
    assert.deepEqual(byName['edge.example.net'], [[w.inet(2), 300, 'dns']]);
    assert.deepEqual(byName['other.example.org'], [[w.inet(3), 300, 'dns']]);
    const flowsFile = join(w.node.tmp.dir, 'flows.yaml');
    writeFileSync(
      flowsFile,
      [
        'flows:',
        `  - { name: fqdn-allowed, src: default/app, dst: "${w.inet(1)}", dport: 443, protocol: TCP }`,
        `  - { name: fqdn-other-port, src: default/app, dst: "${w.inet(1)}", dport: 80, protocol: TCP }`,
        `  - { name: fqdn-not-selected, src: default/app, dst: "${w.inet(3)}", dport: 443, protocol: TCP }`,
        '  - { name: dns-allowed, src: default/web, dst: kube-system/coredns, dport: 53, protocol: UDP, dns: { name: www.example.com } }',
        '  - { name: dns-refused, src: default/web, dst: kube-system/coredns, dport: 53, protocol: UDP, dns: { name: api.github.com } }',
      ].join('\n'),
    );
    const tr = (await cli('policy', 'trace', '--flows', flowsFile)) as { flows: Array<{ name: string; verdict: string; l7: string | null }> };
    assert.deepEqual(
      tr.flows.map((f) => [f.name, f.verdict, f.l7]),
      [
        ['fqdn-allowed', 'ALLOWED', null],
        ['fqdn-other-port', 'DENIED', null],
        ['fqdn-not-selected', 'DENIED', null],
        ['dns-allowed', 'ALLOWED', 'ALLOWED'],
        ['dns-refused', 'DENIED', 'DENIED'],
      ],
    );
  });

  await t.test('the first connection right after the answer succeeds, 200 times (new names, new addresses)', async (t) => {
    const fails: string[] = [];
    const ms: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      const r = await app.call({ op: 'resolveConnect', server, name: `n${i}.example.com`, port: 443, timeoutMs: 3000 });
      ms.push(performance.now() - t0);
      if (r.connect !== `INET 443 ${w.pods.app.ip}`) fails.push(`n${i}: ${JSON.stringify(r)}`);
      // A broken path fails every try at its timeout: stop early rather than spend minutes confirming it.
      if (fails.length >= 5) break;
    }
    ms.sort((a, b) => a - b);
    t.diagnostic(`resolve+connect ms: p50 ${ms[100]?.toFixed(1)} p99 ${ms[198]?.toFixed(1)} max ${ms[199]?.toFixed(1)}`);
    assert.deepEqual(fails, []);
    assert.equal((await dns().stats()).delayedPastMax, 0, 'every answer waited for the kernel, none was let go at proxyResponseMaxDelay');
  });

  await t.test('a TTL change is followed, and an address closes after its TTL when no connection uses it', async () => {
    await w.dnsmasq({ ttl: 2 });
    const first = await app.call({ op: 'query', server, name: 'short.example.com' });
    assert.equal(first.answers?.[0]?.ttl, 2);
    await w.dnsmasq({ ttl: 300 });
    await app.call({ op: 'query', server, name: 'short.example.com' });
    const e = dns().list('default/app').find((x) => x.name === 'short.example.com');
    assert.equal(e?.ips[0]?.ttl, 300);
    assert.ok((e?.ips[0]?.expiresAt ?? 0) > Date.now() + 290_000);
    await w.dnsmasq({ ttl: 2 });
    const s2 = await app.call({ op: 'query', server, name: 'short2.example.com' });
    assert.equal(s2.rcode, 'NOERROR');
    await sleep(2500);
    await dns().sweep();
    assert.equal(dns().list('default/app').find((x) => x.name === 'short.example.com')?.ips.length, 1, 'short.example.com follows the new TTL');
    assert.equal(dns().list('default/app').find((x) => x.name === 'short2.example.com'), undefined, 'short2.example.com expired');
    assert.ok(!agent().engine.ipcache().some((x) => x.prefix === `${w.inet(5)}/32`), 'its identity left the ipcache');
    assert.equal((await app.call({ op: 'connect', ip: w.inet(5), port: 443, timeoutMs: 1000 })).connect, 'timeout', 'and the kernel drops it');
    assert.equal((await app.call({ op: 'connect', ip: w.inet(4), port: 443 })).connect, `INET 443 ${w.pods.app.ip}`);
    await w.dnsmasq({ ttl: 300 });
  });

  await t.test('meshd fqdn cache flush removes a name: its identity leaves the ipcache and the kernel drops it; the next answer opens it again', async () => {
    // Resolved, not connected: no connection uses the address (one that did would expire instead of going).
    const r = await app.call({ op: 'query', server, name: 'flush.example.com' });
    assert.equal(r.rcode, 'NOERROR');
    assert.equal(kernelIpcacheHas(w.inet(6)), true);
    const flushed = (await cli('fqdn', 'cache', 'flush', '--name', 'flush.example.com', '--endpoint', 'default/app')) as { removed: Array<{ endpoint: string; name: string; ips: string[] }> };
    assert.deepEqual(flushed.removed, [{ endpoint: 'default/app', name: 'flush.example.com', ips: [w.inet(6)] }]);
    assert.equal(dns().list('default/app').find((x) => x.name === 'flush.example.com'), undefined);
    assert.equal(agent().engine.identityOfIp(w.inet(6)), 2);
    assert.equal(kernelIpcacheHas(w.inet(6)), false);
    assert.equal((await app.call({ op: 'connect', ip: w.inet(6), port: 443, timeoutMs: 1000 })).connect, 'timeout', 'the kernel drops it');
    const again = await app.call({ op: 'resolveConnect', server, name: 'flush.example.com', port: 443 });
    assert.equal(again.connect, `INET 443 ${w.pods.app.ip}`);
    // Nothing matches: nothing removed, nothing else touched.
    const none = (await cli('fqdn', 'cache', 'flush', '--name', '*.nowhere.example')) as { removed: unknown[] };
    assert.deepEqual(none.removed, []);
    assert.equal(kernelIpcacheHas(w.inet(1)), true);
  });

  await t.test('malformed input, fuzzed: the proxy stays up and answers the next good query', async (t) => {
    const seeds = ['api.github.com', 'www.example.com'].map((n) => {
      const b = Buffer.alloc(12 + n.length + 6);
      b.writeUInt16BE(0xbeef, 0);
      b.writeUInt16BE(0x0100, 2);
      b.writeUInt16BE(1, 4);
      let o = 12;
      for (const l of n.split('.')) {
        b[o++] = l.length;
        b.write(l, o);
        o += l.length;
      }
      b[o++] = 0;
      b.writeUInt16BE(1, o);
      b.writeUInt16BE(1, o + 2);
      return b;
    });
    const before = (await dns().stats());
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < 3000; i++) {
      let b: Buffer;
      if (i % 3 === 0) b = Buffer.from(Array.from({ length: Math.floor(Math.random() * 700) }, () => Math.floor(Math.random() * 256)));
      else {
        b = Buffer.from(seeds[i % 2] ?? Buffer.alloc(0));
        for (let f = 0; f < 1 + (i % 5); f++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
        if (i % 7 === 0) b = b.subarray(0, Math.floor(Math.random() * b.length));
        // A compression pointer to itself, several questions.
        if (i % 11 === 0 && b.length >= 14) b.writeUInt16BE(0xc00c, 12);
        if (i % 13 === 0 && b.length >= 6) b.writeUInt16BE(2 + (i % 3), 4);
      }
      sends.push(web.call({ op: 'raw', server, data: b.toString('base64'), proto: i % 10 === 0 ? 'tcp' : 'udp' }));
      if (sends.length >= 50) await Promise.all(sends.splice(0));
    }
    await Promise.all(sends);
    const after = (await dns().stats());
    t.diagnostic(`fuzz: ${after.malformed - before.malformed} malformed, ${after.rejected - before.rejected} refused, ${after.allowed - before.allowed} forwarded`);
    assert.ok(after.malformed - before.malformed > 500, `malformed counted: ${after.malformed - before.malformed}`);
    const good = await web.call({ op: 'query', server, name: 'www.example.com' });
    assert.equal(good.rcode, 'NOERROR');
    const goodTcp = await web.call({ op: 'query', server, name: 'www.example.com', proto: 'tcp' });
    assert.equal(goodTcp.rcode, 'NOERROR');
    // What the proxy forwarded for web were parsed queries for names its rules allow, nothing else.
    const forwarded = (await dns().recent()).filter((r) => r.endpointId === 'default/web' && r.verdict === 'allowed');
    const allowedByWeb = (n: string) => n === 'example.com' || /^[-a-z0-9_]*\.example\.com$/.test(n) || /\.svc\.cluster\.local$/.test(n);
    assert.deepEqual(forwarded.filter((r) => !allowedByWeb(r.name)), []);
  });
});
