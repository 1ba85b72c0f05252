// Incremental results must equal a from-scratch computation: apply a long
// random sequence of changes (policies, endpoints, labels, namespaces, DNS,
// services) with flushes in between, then compare every endpoint's policy
// with a fresh engine built from the same state, after every flush. Identity numbers differ
// between the two engines, so identities are compared by their labels.
// The incremental engine's allocator also rejects some allocations (one in a
// mutation, at a random point of it): such a mutation must leave no trace, so
// the from-scratch engine is built from the changes that succeeded only, and
// the two must also hold the same identities (nothing leaked by a rollback).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadPolicyDocuments } from './api/loader.js';
import type { PolicyDocument } from './api/schema.js';
import { IdentityAllocationError, LocalIdentityAllocator } from '../identity/allocator.js';
import type { Identity } from '../identity/allocator.js';
import type { LabelSet } from '../identity/labels.js';
import { isMeshdError } from '../util/errors.js';
import { MemoryDnsCache } from './dns-cache.js';
import { PolicyEngine } from './engine.js';
import type { EndpointInput, ServiceInput } from './engine.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const APPS = ['web', 'api', 'db', 'cache', 'job', 'tool'];
const NAMESPACES = ['a', 'b'];

function variants(): PolicyDocument[][] {
  const raw: unknown[][] = [
    [
      { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p0', namespace: 'a' }, spec: { endpointSelector: { matchLabels: { app: 'api' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'web' } }], toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }] }] } },
      { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p0', namespace: 'a' }, spec: { endpointSelector: { matchLabels: { app: 'api' } }, ingress: [{ fromEndpoints: [{ matchLabels: { tier: 'front' } }], toPorts: [{ ports: [{ port: 'http', protocol: 'TCP' }], rules: { http: [{ method: 'GET' }] } }] }] } },
    ],
    [
      { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'c1' }, spec: { endpointSelector: { matchLabels: { app: 'db' } }, ingress: [{ fromEndpoints: [{ matchLabels: { 'k8s:io.cilium.k8s.namespace.labels.env': 'prod' } }] }], egress: [{ toFQDNs: [{ matchPattern: '*.example.com' }] }, { toEntities: ['cluster'] }] } },
      { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'c1' }, spec: { endpointSelector: { matchLabels: { app: 'db' } }, egressDeny: [{ toCIDRSet: [{ cidr: '198.51.100.0/24', except: ['198.51.100.128/25'] }] }], egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: 'metrics', protocol: 'TCP' }] }] }] } },
    ],
    [
      { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'n2', namespace: 'b' }, spec: { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: 'prod' } } }, { ipBlock: { cidr: '10.0.0.0/8', except: ['10.9.0.0/16'] } }], ports: [{ port: 5432 }, { port: 9000, endPort: 9010 }] }] } },
      { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'n2', namespace: 'b' }, spec: { podSelector: { matchLabels: { app: 'cache' } }, policyTypes: ['Ingress', 'Egress'], egress: [{ to: [{ podSelector: { matchLabels: { app: 'db' } } }] }] } },
    ],
    [
      { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p3', namespace: 'b' }, spec: { endpointSelector: {}, egress: [{ toServices: [{ k8sService: { serviceName: 'svc', namespace: 'a' } }] }, { toFQDNs: [{ matchName: 'api.example.com' }], toPorts: [{ ports: [{ port: '443' }] }] }], ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'job' } }] }] } },
      { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p3', namespace: 'b' }, spec: { endpointSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['job'] }] }, ingress: [{ fromEntities: ['world', 'host'] }, { fromEndpoints: [{ matchExpressions: [{ key: 'tier', operator: 'Exists' }] }] }] } },
    ],
  ];
  return raw.map((vs) => {
    const r = loadPolicyDocuments(vs);
    assert.deepEqual(r.problems, []);
    return r.policies.map((p) => p.document);
  });
}

interface State {
  namespaces: Map<string, Record<string, string>>;
  endpoints: Map<string, EndpointInput>;
  policies: Map<number, PolicyDocument>;
  dns: Map<string, string[]>;
  service: ServiceInput;
}

function canonical(e: PolicyEngine): Record<string, unknown> {
  const name = (id: number): string => (id === 0 ? '*' : (e.allocator.get(id)?.labels.key ?? `?${id}`));
  const out: Record<string, unknown> = {};
  for (const p of e.endpointPolicies()) {
    const dir = (d: typeof p.ingress): unknown => ({
      defaultDeny: d.defaultDeny,
      entries: d.entries
        .map((x) => JSON.stringify({ ...x, remoteIdentity: name(x.remoteIdentity) }))
        .sort(),
    });
    out[p.endpointId] = { identity: name(p.identity), ingress: dir(p.ingress), egress: dir(p.egress) };
  }
  return out;
}

/** Label sets of the identities an engine holds besides the reserved ones. */
function liveIdentities(e: PolicyEngine): string[] {
  return [...e.allocator.all()].flatMap((i) => (i.scope === 'reserved' ? [] : [i.labels.key])).sort();
}

/** Rejects the allocation numbered `failAt` (0 = the next one) once; -1 = never. */
class FlakyAllocator extends LocalIdentityAllocator {
  failAt = -1;

  override allocate(labels: LabelSet): Promise<Identity> {
    if (this.failAt === 0) {
      this.failAt = -1;
      return Promise.reject(new IdentityAllocationError('injected failure', { kind: 'unavailable' }));
    }
    if (this.failAt > 0) this.failAt--;
    return super.allocate(labels);
  }
}

async function build(state: State): Promise<PolicyEngine> {
  const dns = new MemoryDnsCache();
  const e = new PolicyEngine({ dns });
  for (const [n, l] of state.namespaces) await e.upsertNamespace(n, l);
  for (const ep of state.endpoints.values()) await e.upsertEndpoint(ep);
  await e.upsertService(state.service);
  for (const [n, ips] of state.dns) dns.set(n, ips);
  for (const d of state.policies.values()) await e.upsertPolicy(d);
  await e.settled();
  e.flush();
  return e;
}

for (const seed of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) {
  test(`incremental equals from-scratch after random changes (seed ${seed})`, async () => {
    const rand = rng(seed);
    const pick = <T>(xs: readonly T[]): T => {
      const x = xs[Math.floor(rand() * xs.length)];
      if (x === undefined) throw new Error('pick from an empty list');
      return x;
    };
    const pools = variants();
    const dns = new MemoryDnsCache();
    const alloc = new FlakyAllocator();
    const e = new PolicyEngine({ dns, allocator: alloc });
    let rejected = 0;
    /** Runs an engine mutation, perhaps with one allocation rejected; the model changes only if it succeeded. */
    const attempt = async (mutation: () => Promise<unknown>, commit: () => void): Promise<void> => {
      alloc.failAt = rand() < 0.5 ? Math.floor(rand() * 3) : -1;
      try {
        await mutation();
      } catch (err) {
        if (!isMeshdError(err, 'MESHD_IDENTITY_ALLOCATION')) throw err;
        rejected++;
        return;
      } finally {
        alloc.failAt = -1;
      }
      commit();
    };
    const state: State = {
      namespaces: new Map(),
      endpoints: new Map(),
      policies: new Map(),
      dns: new Map(),
      service: { namespace: 'a', name: 'svc', selector: { app: 'api' } },
    };
    const endpoint = (i: number): EndpointInput => {
      const ep: EndpointInput = {
        namespace: pick(NAMESPACES),
        name: `ep${i}`,
        labels: { app: pick(APPS), ...(rand() < 0.4 ? { tier: 'front' } : {}) },
        ips: [`10.${i}.0.1`],
      };
      if (rand() < 0.5) ep.ports = [{ name: pick(['http', 'metrics']), port: 8000 + Math.floor(rand() * 3) }];
      return ep;
    };
    for (const n of NAMESPACES) {
      state.namespaces.set(n, { env: pick(['prod', 'dev']) });
      await e.upsertNamespace(n, state.namespaces.get(n));
    }
    await e.upsertService(state.service);
    for (let i = 0; i < 12; i++) {
      const ep = endpoint(i);
      state.endpoints.set(`${ep.namespace}/${ep.name}`, ep);
      await e.upsertEndpoint(ep);
    }
    e.flush();
    for (let step = 0; step < 120; step++) {
      const op = Math.floor(rand() * 8);
      if (op <= 1) {
        const k = Math.floor(rand() * pools.length);
        const d = pick(pools[k] ?? []);
        await attempt(() => e.upsertPolicy(d), () => state.policies.set(k, d));
      } else if (op === 2) {
        const k = Math.floor(rand() * pools.length);
        const d = state.policies.get(k);
        if (d) {
          state.policies.delete(k);
          const key = `${d.kind}/${d.kind === 'CiliumClusterwideNetworkPolicy' ? d.doc.metadata.name : `${d.doc.metadata.namespace ?? 'default'}/${d.doc.metadata.name}`}`;
          assert.ok(await e.removePolicy(key));
        }
      } else if (op === 3) {
        const i = Math.floor(rand() * 16);
        for (const [id, ep] of state.endpoints) if (ep.name === `ep${i}`) {
          state.endpoints.delete(id);
          await e.removeEndpoint(id);
        }
        const ep = endpoint(i);
        await attempt(() => e.upsertEndpoint(ep), () => state.endpoints.set(`${ep.namespace}/${ep.name}`, ep));
      } else if (op === 4) {
        const ids = [...state.endpoints.keys()];
        if (ids.length > 0) {
          const id = pick(ids);
          state.endpoints.delete(id);
          await e.removeEndpoint(id);
        }
      } else if (op === 5) {
        const n = pick(['api.example.com', 'www.example.com', 'x.other.org']);
        const ips = rand() < 0.3 ? [] : [`203.0.113.${Math.floor(rand() * 4)}`, ...(rand() < 0.5 ? ['198.51.100.7'] : [])];
        if (ips.length === 0) state.dns.delete(n);
        else state.dns.set(n, ips);
        dns.set(n, ips);
        await e.settled();
      } else if (op === 6) {
        const n = pick(NAMESPACES);
        const labels = { env: pick(['prod', 'dev']) };
        await attempt(() => e.upsertNamespace(n, labels), () => state.namespaces.set(n, labels));
      } else {
        const svc = { namespace: 'a', name: 'svc', selector: { app: pick(APPS) } };
        await attempt(() => e.upsertService(svc), () => (state.service = svc));
      }
      if (rand() < 0.5) {
        e.flush();
        const fresh = await build(state);
        assert.deepEqual(canonical(e), canonical(fresh), `after step ${step}`);
        assert.deepEqual(liveIdentities(e), liveIdentities(fresh), `identities after step ${step}`);
      }
    }
    e.flush();
    const fresh = await build(state);
    assert.deepEqual(canonical(e), canonical(fresh));
    assert.deepEqual(liveIdentities(e), liveIdentities(fresh));
    assert.ok(rejected >= 2, `only ${rejected} mutations were rejected`);
  });
}
