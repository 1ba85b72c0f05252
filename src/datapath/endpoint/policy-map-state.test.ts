import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshdError } from '../../util/errors.js';
import { lookupEntries } from '../../policy/lookup.js';
import type { EndpointPolicy, PolicyEntry } from '../../policy/types.js';
import {
  diffPolicyMapState,
  keyCovers,
  policyKeyId,
  policyKeyPrefixlen,
  policyMapState,
  PolicyMapStateError,
  portPrefixes,
} from './policy-map-state.js';

const opts = { proxyPort: () => 15001 };

function entry(p: Partial<PolicyEntry> & Pick<PolicyEntry, 'verdict'>): PolicyEntry {
  return { remoteIdentity: 0, protocol: 6, port: 0, endPort: 0, derivedFrom: ['ns/p'], ...p };
}

function policy(ingress: PolicyEntry[], egress: PolicyEntry[] = []): EndpointPolicy {
  return {
    endpointId: 'ns/pod',
    identity: 1000,
    ingress: { defaultDeny: true, entries: ingress },
    egress: { defaultDeny: false, entries: egress },
    revision: 1,
  };
}

test('port ranges become the minimal aligned prefixes that cover exactly the range', () => {
  assert.deepEqual(portPrefixes(80, 80), [{ port: 80, bits: 16 }]);
  assert.deepEqual(portPrefixes(0, 65535), [{ port: 0, bits: 0 }]);
  assert.deepEqual(portPrefixes(8080, 8083), [{ port: 8080, bits: 14 }]);
  for (const [lo, hi] of [
    [1, 65535],
    [1000, 2000],
    [7, 9],
  ] as const) {
    const covered = new Set<number>();
    for (const p of portPrefixes(lo, hi)) {
      for (let x = p.port; x < p.port + 2 ** (16 - p.bits); x += 1) covered.add(x);
    }
    assert.equal(covered.size, hi - lo + 1);
    assert.ok([...covered].every((x) => x >= lo && x <= hi));
  }
  assert.ok(portPrefixes(1, 65535).length <= 16);
  assert.throws(() => portPrefixes(10, 5), (e: unknown) => isMeshdError(e, 'MESHD_POLICY_BAD_ENTRY'));
});

test('prefix lengths: exact port 96, any port 80, any protocol 72', () => {
  const st = policyMapState(
    policy([entry({ verdict: 'ALLOW', port: 80, endPort: 80 }), entry({ verdict: 'ALLOW', remoteIdentity: 7, protocol: 17 }), entry({ verdict: 'ALLOW', remoteIdentity: 9, protocol: 0 })]),
    opts,
  );
  assert.deepEqual([...st.values()].map((e) => policyKeyPrefixlen(e.key)).sort(), [72, 80, 96]);
});

test('any protocol with a port expands to TCP, UDP and SCTP', () => {
  const st = policyMapState(policy([entry({ verdict: 'ALLOW', protocol: 0, port: 53, endPort: 53 })]), opts);
  assert.deepEqual([...st.values()].map((e) => e.key.proto).sort((a, b) => a - b), [6, 17, 132]);
});

test('a broader deny is written into the narrower allow keys it covers', () => {
  const st = policyMapState(
    policy([
      entry({ verdict: 'ALLOW', remoteIdentity: 300, port: 80, endPort: 80 }),
      entry({ verdict: 'ALLOW', remoteIdentity: 301, port: 80, endPort: 80 }),
      entry({ verdict: 'DENY', remoteIdentity: 300, port: 0, endPort: 0 }),
      entry({ verdict: 'DENY', remoteIdentity: 0, protocol: 6, port: 8000, endPort: 8999 }),
      entry({ verdict: 'ALLOW', remoteIdentity: 301, port: 8080, endPort: 8080 }),
    ]),
    opts,
  );
  const get = (id: number, port: number, bits: number) => st.get(policyKeyId({ identity: id, egress: 0, proto: 6, port, portBits: bits, anyProto: false }))?.value.verdict;
  assert.equal(get(300, 80, 16), 'DENY');
  assert.equal(get(301, 80, 16), 'ALLOW');
  assert.equal(get(301, 8080, 16), 'DENY');
});

test('the same key from two rows keeps the strongest verdict (DENY > REDIRECT > ALLOW)', () => {
  const st = policyMapState(
    policy([
      entry({ verdict: 'ALLOW', port: 80, endPort: 80 }),
      entry({ verdict: 'REDIRECT', port: 80, endPort: 80, l7: { kind: 'http', rules: [{ path: '/' }] } }),
    ]),
    opts,
  );
  assert.deepEqual([...st.values()].map((e) => e.value), [{ verdict: 'REDIRECT', proxyPort: 15001 }]);
});

test('REDIRECT needs l7 rules and a proxy port', () => {
  assert.throws(
    () => policyMapState(policy([entry({ verdict: 'REDIRECT', port: 80, endPort: 80 })]), opts),
    (e: unknown) => e instanceof PolicyMapStateError && e.code === 'MESHD_POLICY_BAD_ENTRY' && e.where === 'ns/pod.ingress.entries[0]',
  );
  assert.throws(
    () => policyMapState(policy([entry({ verdict: 'REDIRECT', port: 80, endPort: 80, l7: { kind: 'dns', rules: [] } })]), { proxyPort: () => 0 }),
    (e: unknown) => e instanceof PolicyMapStateError && e.code === 'MESHD_POLICY_NO_PROXY_PORT',
  );
});

test('keyCovers follows identity, protocol and port prefixes', () => {
  const k = (identity: number, proto: number, port: number, portBits: number, anyProto = false) => ({ identity, egress: 1 as const, proto, port, portBits, anyProto });
  assert.ok(keyCovers(k(0, 6, 0, 0), k(5, 6, 80, 16)));
  assert.ok(keyCovers(k(5, 0, 0, 0, true), k(5, 17, 53, 16)));
  assert.ok(!keyCovers(k(5, 6, 80, 16), k(5, 6, 0, 0)));
  assert.ok(!keyCovers(k(6, 6, 0, 0), k(5, 6, 80, 16)));
  assert.ok(keyCovers(k(5, 6, 8080, 14), k(5, 6, 8083, 16)));
  assert.ok(!keyCovers(k(5, 6, 8080, 14), k(5, 6, 8084, 16)));
});

test('diff touches only changes, deny writes first and deny removals last', () => {
  const a = policyMapState(
    policy([entry({ verdict: 'ALLOW', remoteIdentity: 1, port: 80, endPort: 80 }), entry({ verdict: 'DENY', remoteIdentity: 2, port: 22, endPort: 22 }), entry({ verdict: 'ALLOW', remoteIdentity: 3, port: 443, endPort: 443 })]),
    opts,
  );
  const b = policyMapState(
    policy([entry({ verdict: 'ALLOW', remoteIdentity: 1, port: 80, endPort: 80 }), entry({ verdict: 'DENY', remoteIdentity: 4, port: 22, endPort: 22 }), entry({ verdict: 'ALLOW', remoteIdentity: 5, port: 443, endPort: 443 })]),
    opts,
  );
  const ops = diffPolicyMapState(a, b).map((o) => (o.op === 'put' ? `put ${o.entry.key.identity} ${o.entry.value.verdict}` : `del ${o.key.identity}`));
  assert.deepEqual(ops, ['put 4 DENY', 'put 5 ALLOW', 'del 3', 'del 2']);
  assert.deepEqual(diffPolicyMapState(b, b), []);
});

// --- the datapath's lookup, simulated, against the contract's semantics ---

type Pkt = { identity: number; egress: 0 | 1; proto: number; port: number };

/** What bpf/lib/policy.h does: per identity the exact-port hash, else the longest trie prefix; then DENY > REDIRECT > ALLOW across identities. */
function simulate(state: ReturnType<typeof policyMapState>, p: Pkt): string | undefined {
  const one = (identity: number) => {
    let best: { len: number; verdict: string } | undefined;
    for (const { key, value } of state.values()) {
      if (key.identity !== identity || key.egress !== p.egress) continue;
      const len = policyKeyPrefixlen(key);
      const matches = key.anyProto || (key.proto === p.proto && (key.portBits === 0 || key.port >>> (16 - key.portBits) === p.port >>> (16 - key.portBits)));
      if (matches && (!best || len > best.len)) best = { len, verdict: value.verdict };
    }
    return best?.verdict;
  };
  const rankOf: Record<string, number> = { ALLOW: 1, REDIRECT: 2, DENY: 3 };
  const a = one(p.identity);
  const b = p.identity !== 0 ? one(0) : undefined;
  if (!a) return b;
  if (!b) return a;
  return (rankOf[b] ?? 0) > (rankOf[a] ?? 0) ? b : a;
}

test("on random policies the datapath lookup gives the policy engine's reference verdict for every packet", () => {
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return (seed >>> 12) % n;
  };
  const ids = [0, 1001, 1002];
  const ports = [0, 22, 80, 81, 443, 1000, 8080, 8081, 8443];
  for (let round = 0; round < 300; round += 1) {
    const entries: PolicyEntry[] = [];
    const n = 1 + rnd(6);
    for (let i = 0; i < n; i += 1) {
      const verdict = (['ALLOW', 'ALLOW', 'DENY', 'REDIRECT'] as const)[rnd(4)] ?? 'ALLOW';
      const protocol = ([0, 6, 6, 17] as const)[rnd(4)] ?? 6;
      const anyPort = rnd(4) === 0;
      const port = anyPort ? 0 : (ports[1 + rnd(ports.length - 1)] ?? 80);
      const endPort = anyPort ? 0 : rnd(3) === 0 ? port + rnd(600) : port;
      const e: PolicyEntry = { remoteIdentity: ids[rnd(3)] ?? 0, protocol, port, endPort, verdict, derivedFrom: ['r'] };
      if (verdict === 'REDIRECT') e.l7 = { kind: 'http', rules: [] };
      entries.push(e);
    }
    const st = policyMapState(policy(entries), opts);
    for (const identity of [1001, 1002, 1003]) {
      for (const proto of [6, 17, 1]) {
        // ICMP carries no port in the datapath (parse.h): its packets are looked up with port 0
        for (const port of proto === 1 ? [0] : [0, 22, 80, 81, 300, 443, 999, 1000, 1001, 8080, 8081, 8443, 8600]) {
          const p: Pkt = { identity, egress: 0, proto, port };
          // the datapath: a match, else the direction's default deny (policy() sets ingress default-deny)
          const got = simulate(st, p) ?? 'DENY';
          const want = lookupEntries({ defaultDeny: true, entries }, identity, proto, port).verdict;
          assert.equal(got, want, `round ${round} ${JSON.stringify(p)} entries ${JSON.stringify(entries)}`);
        }
      }
    }
  }
});
