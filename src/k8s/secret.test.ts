import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SecretSubscriber } from '../agent/secret-subscriber.js';
import { parseResource, refOf, resourceKey } from './kinds.js';
import { secret, secretData } from './secret.js';

test('a Secret parses from a manifest or the API server; data is base64, stringData plain text and wins; bad base64 is refused at its key', () => {
  const r = secret.parse({ metadata: { name: 'intercept', namespace: 'shop' }, type: 'kubernetes.io/tls', data: { 'tls.crt': Buffer.from('CERT').toString('base64'), 'tls.key': Buffer.from('OLD').toString('base64') }, stringData: { 'tls.key': 'KEY' } });
  assert.ok(r.ok);
  assert.deepEqual(secretData(r.value), { 'tls.crt': 'CERT', 'tls.key': 'KEY' });
  const bad = secret.parse({ metadata: { name: 'x' }, data: { 'ca.crt': 'not base64!' } });
  assert.ok(!bad.ok);
  assert.deepEqual(bad.problems.map((p) => [p.path, p.code]), [[['data', 'ca.crt'], 'INVALID_VALUE']]);
});

test('the Secret subscriber keeps the data by namespace/name for the proxy, and forgets deleted Secrets', async () => {
  const r = parseResource({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ca', namespace: 'shop' }, stringData: { 'ca.crt': 'PEM' } });
  assert.ok(r.ok);
  const ref = refOf(r.value);
  const sub = new SecretSubscriber();
  const ev = { key: resourceKey(ref), ref, object: r.value, origin: 'test' };
  await sub.apply({ ...ev, type: 'upsert' });
  assert.deepEqual(sub.data().get('shop/ca'), { 'ca.crt': 'PEM' });
  await sub.apply({ ...ev, type: 'delete' });
  assert.equal(sub.data().get('shop/ca'), undefined);
});
