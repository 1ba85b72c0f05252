import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mustParse } from '../k8s/kind.js';
import type { PolicyStatusChange } from '../k8s/policy-status.js';
import { KINDS, refOf, resourceKey } from '../k8s/kinds.js';
import { PolicyEngine } from '../policy/index.js';
import { PolicySubscriber } from './policy-subscriber.js';
import type { ResourceEvent } from './resource-source.js';

const cnp = mustParse(KINDS.CiliumNetworkPolicy, {
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'p', namespace: 'shop' },
  spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{}] },
});
const ev = (type: ResourceEvent['type']): ResourceEvent => ({ type, ref: refOf(cnp), key: resourceKey(refOf(cnp)), object: cnp, origin: 'p.yaml' });

test('policy events reach the engine and the status; the source’s problems mark the policy', async () => {
  const engine = new PolicyEngine();
  const sub = new PolicySubscriber(engine);
  await sub.apply(ev('upsert'));
  assert.deepEqual(engine.policyKeys(), ['CiliumNetworkPolicy/shop/p']);
  assert.deepEqual(sub.statuses(), [{ key: 'CiliumNetworkPolicy/shop/p', origin: 'p.yaml', state: 'enforced', problems: [] }]);

  // A broken later version: the enforced one stays, with the problem listed.
  sub.noteProblems([{ origin: 'p.yaml', document: 0, ref: refOf(cnp), path: ['spec', 'ingress', 0, 'fromCIDR', 0], code: 'INVALID_CIDR', message: 'bad' }]);
  assert.deepEqual(sub.statuses(), [{ key: 'CiliumNetworkPolicy/shop/p', origin: 'p.yaml', state: 'enforced', problems: [{ path: 'spec.ingress[0].fromCIDR[0]', message: 'bad' }] }]);

  // A policy never accepted is listed as rejected; problems of other kinds are not policies.
  sub.noteProblems([
    { origin: 'q.yaml', ref: { kind: 'NetworkPolicy', namespace: 'shop', name: 'q' }, path: ['spec'], code: 'WRONG_TYPE', message: 'missing' },
    { origin: 'pod.yaml', ref: { kind: 'Pod', namespace: 'shop', name: 'x' }, path: [], code: 'WRONG_TYPE', message: 'x' },
  ]);
  assert.deepEqual(
    sub.statuses().map((s) => [s.key, s.state]),
    [
      ['CiliumNetworkPolicy/shop/p', 'enforced'],
      ['NetworkPolicy/shop/q', 'rejected'],
    ],
  );

  await sub.apply(ev('delete'));
  assert.deepEqual(engine.policyKeys(), []);
  assert.deepEqual(sub.statuses().map((s) => s.key), ['NetworkPolicy/shop/q']);
});

test('the status listener hears each change with the generation; a status-only update (same generation) is not enforced anew', async () => {
  const engine = new PolicyEngine();
  let upserts = 0;
  const upsert = engine.upsertPolicy.bind(engine);
  engine.upsertPolicy = async (d) => {
    upserts++;
    return upsert(d);
  };
  const heard: PolicyStatusChange[] = [];
  const sub = new PolicySubscriber(engine, (c) => heard.push(c));
  const at = (generation: number, status?: unknown): ResourceEvent => {
    const object = mustParse(KINDS.CiliumNetworkPolicy, { ...cnp, metadata: { ...cnp.metadata, generation }, ...(status === undefined ? {} : { status }) });
    return { type: 'upsert', ref: refOf(object), key: resourceKey(refOf(object)), object, origin: 'k8s' };
  };

  await sub.apply(at(1));
  assert.deepEqual(heard.at(-1), { ref: refOf(cnp), ok: true, enforcing: true, generation: 1, problems: [], reported: undefined });
  const status = { nodes: { a: { ok: true, observedGeneration: 1 } } };
  await sub.apply(at(1, status));
  assert.equal(upserts, 1, 'a status write does not re-enforce the policy');
  assert.deepEqual(heard.at(-1)?.reported, status, 'the writer learns what the object says');

  sub.noteProblems([{ origin: 'k8s', ref: refOf(cnp), path: ['spec', 'ingress', 0, 'fromCIDR', 0], code: 'INVALID_CIDR', message: 'bad' }]);
  assert.deepEqual(heard.at(-1), { ref: refOf(cnp), ok: false, enforcing: true, problems: [{ path: 'spec.ingress[0].fromCIDR[0]', code: 'INVALID_CIDR', message: 'bad' }] });

  await sub.apply(at(2));
  assert.equal(upserts, 2);
  assert.equal(heard.at(-1)?.generation, 2);

  await sub.apply({ ...at(2), type: 'delete' });
  assert.deepEqual(heard.at(-1), { ref: refOf(cnp), deleted: true, ok: false, enforcing: false, problems: [] });
});
