/**
 * The DNS proxy across agent restarts, with dnsProxy.dnsRejectResponseCode=nameError:
 * a denied name gets NXDOMAIN; the FQDN cache is restored before the new
 * agent's first write, so under a loop of queries and connections no
 * connection to an address resolved before the restart fails at any time
 * (established or new), the addresses keep their identities, and no query
 * fails once the proxy is back. The proxy's worker thread alone dying is
 * restarted by the agent on the same port.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PEER_START_MS, startPeer } from '../helpers/datapath-peer.js';
import { DnsWorld, startPodClient } from '../helpers/dns-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('DNS proxy: NXDOMAIN setting; agent restart under a loop of queries and connections', async (t) => {
  requirePrivileges();
  const w = await DnsWorld.create(t, { 'dnsProxy.dnsRejectResponseCode': 'nameError' });
  await w.dnsmasq({ ttl: 300 });
  const server = w.resolver;
  const web = await w.client('web');
  const app = await w.client('app');
  const agent = () => {
    const a = w.node.running?.agent;
    assert.ok(a);
    return a;
  };

  await t.test('a name no rule allows gets NXDOMAIN from the proxy', async () => {
    const no = await web.call({ op: 'query', server, name: 'api.github.com' });
    assert.equal(no.rcode, 'NXDOMAIN');
    const noTcp = await web.call({ op: 'query', server, name: 'api.github.com', proto: 'tcp' });
    assert.equal(noTcp.rcode, 'NXDOMAIN');
    const ok = await web.call({ op: 'query', server, name: 'www.example.com' });
    assert.equal(ok.rcode, 'NOERROR');
  });

  await t.test('the proxy worker thread dies: the agent restarts it on the same port, and it judges and enforces as before', async () => {
    const dns = agent().dnsService();
    assert.ok(dns);
    const port = dns.port;
    const before = dns.proxy.threadId;
    assert.ok(before !== null);
    await dns.proxy.kill();
    for (let i = 0; i < 200 && (dns.proxy.threadId === null || dns.proxy.threadId === before); i++) await sleep(50);
    assert.notEqual(dns.proxy.threadId, before, 'a new worker runs');
    assert.ok(dns.proxy.threadId !== null, 'a new worker runs');
    assert.equal(dns.proxy.restarts, 1);
    assert.equal(dns.port, port);
    assert.equal((await dns.stats()).port, port);
    const no = await web.call({ op: 'query', server, name: 'api.github.com' });
    assert.equal(no.rcode, 'NXDOMAIN', 'the new worker has the policy');
    const ok = await web.call({ op: 'query', server, name: 'www.example.com', proto: 'tcp' });
    assert.equal(ok.rcode, 'NOERROR');
    // The new worker has learned nothing: the answer goes through the toFQDNs path before the connection.
    const r = await app.call({ op: 'resolveConnect', server, name: 'api.github.com', port: 443 });
    assert.equal(r.connect, `INET 443 ${w.pods.app.ip}`);
    assert.ok((await dns.stats()).allowed >= 2);
  });

  await t.test('restart: resolved addresses stay open throughout, queries work again once the proxy is back', async () => {
    const r = await app.call({ op: 'resolveConnect', server, name: 'api.github.com', port: 443 });
    assert.equal(r.connect, `INET 443 ${w.pods.app.ip}`);
    const prefix = `${w.inet(1)}/32`;
    const identityBefore = agent().engine.ipcache().find((e) => e.prefix === prefix)?.identity;
    assert.ok(identityBefore !== undefined);
    const kernelBefore = w.node.pinnedRows(['meshd_ipcache']);
    // An established connection through the restart.
    const held = await startPeer(w.node.sb, w.pods.app.ns, ['hold', w.inet(1), '443', '2']);
    await held.waitFor(/^INET 443 /, PEER_START_MS);

    const conns = await startPodClient(w.node, w.pods.app.ns);
    const queries = await startPodClient(w.node, w.pods.app.ns);
    let stop = false;
    let proxyBackAt = Number.POSITIVE_INFINITY;
    const connResults: Array<{ at: number; r: string }> = [];
    const queryResults: Array<{ at: number; r: string }> = [];
    const connLoop = (async () => {
      while (!stop) {
        const c = await conns.call({ op: 'connect', ip: w.inet(1), port: 443, timeoutMs: 2000 });
        connResults.push({ at: Date.now(), r: c.connect ?? '' });
        await sleep(20);
      }
    })();
    const queryLoop = (async () => {
      while (!stop) {
        const started = Date.now();
        const q = await queries.call({ op: 'query', server, name: 'api.github.com', timeoutMs: 1000 });
        queryResults.push({ at: started, r: q.rcode ?? q.error ?? '' });
        await sleep(20);
      }
    })();
    // Both loops running and answered before the agent goes.
    for (let i = 0; i < 100 && !(queryResults.some((q) => q.r === 'NOERROR') && connResults.length > 3); i++) await sleep(100);
    await w.node.stopAgent();
    await sleep(1500);
    await w.node.start();
    proxyBackAt = Date.now();
    const restored = agent().fqdn.list('default/app').find((e) => e.name === 'api.github.com');
    assert.equal(restored?.ips[0]?.ip, w.inet(1));
    await sleep(2000);
    stop = true;
    await Promise.all([connLoop, queryLoop]);
    held.send('after-restart');
    await held.waitFor(/^after-restart$/);

    const wantConn = `INET 443 ${w.pods.app.ip}`;
    assert.ok(connResults.length > 10, `connections made: ${connResults.length}`);
    assert.deepEqual(connResults.filter((c) => c.r !== wantConn), [], 'no failed connection at any time');
    const after = queryResults.filter((q) => q.at >= proxyBackAt);
    assert.ok(after.length > 5, `queries after the restart: ${after.length}`);
    assert.deepEqual(after.filter((q) => q.r !== 'NOERROR'), [], 'no failed query once the proxy is back');
    assert.ok(queryResults.some((q) => q.at < proxyBackAt && q.r === 'NOERROR'), `queries worked before the restart: ${JSON.stringify(queryResults.slice(0, 5))}`);
    assert.equal(agent().engine.ipcache().find((e) => e.prefix === prefix)?.identity, identityBefore, 'the address kept its identity');
    assert.deepEqual(w.node.pinnedRows(['meshd_ipcache']), kernelBefore, 'the kernel ipcache was not rewritten');
    conns.close();
    queries.close();
  });
});
