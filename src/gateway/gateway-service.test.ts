import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ResourceEvent } from '../agent/resource-source.js';
import { refOf, resourceKey } from '../k8s/kinds.js';
import { MeshdError } from '../util/errors.js';
import { createLogger } from '../util/log.js';
import { GOLDEN_DIR, parseObjectsYaml } from './golden.js';
import { GatewayService, usableNodeAddresses } from './gateway-service.js';
import type { ModelStatus } from './model.js';
import type { GatewayResources } from './translate.js';

function events(c: string): ResourceEvent[] {
  return parseObjectsYaml(readFileSync(join(GOLDEN_DIR, c, 'input.yaml'), 'utf8'), c).map((object) => ({ type: 'upsert', ref: refOf(object), key: resourceKey(refOf(object)), object, origin: c }));
}

const log = createLogger({ component: 'test' }, { level: 'error' });

test('what Envoy accepts is served and its status published; a rejection keeps it out and shows on every Gateway', async () => {
  const applied: GatewayResources[] = [];
  let reject = false;
  const published: ModelStatus[] = [];
  const svc = new GatewayService({
    proxy: {
      applyGateway: (res) => {
        if (reject) return Promise.reject(new MeshdError('MESHD_PROXY_NACKED', 'Envoy rejected it', { kind: 'invalid' }));
        applied.push(res);
        return Promise.resolve({ version: `v${applied.length}` });
      },
    },
    nodeAddresses: () => ['127.0.0.1', '192.0.2.10/24', 'fe80::1'],
    controller: { publish: (s) => void published.push(s) },
    log,
    batchMs: 1,
  });
  for (const ev of events('path-matches')) await svc.apply(ev);
  await svc.settled();
  assert.equal(svc.view().served, 'v1');
  assert.deepEqual(svc.view().gateways, ['default/gw']);
  assert.equal(applied[0]?.listeners.length, 1);
  assert.equal(published.at(-1)?.gateways.get('default/gw')?.conditions.find((c) => c.type === 'Programmed')?.status, 'True');

  reject = true;
  for (const ev of events('header-modifiers')) await svc.apply(ev);
  await svc.settled();
  assert.equal(svc.view().lastError?.code, 'MESHD_PROXY_NACKED');
  assert.equal(svc.view().served, 'v1', 'the last accepted configuration stays the one served');
  const programmed = published.at(-1)?.gateways.get('default/gw')?.conditions.find((c) => c.type === 'Programmed');
  assert.equal(programmed?.status, 'False');
  assert.equal(programmed?.reason, 'Invalid');
  await svc.stop();
});

test('a Gateway falls back to the node\'s routable addresses only', () => {
  assert.deepEqual(usableNodeAddresses(['127.0.0.1', '10.0.0.5/24', 'fe80::1', '169.254.1.1', '2001:db8::1']), ['10.0.0.5', '2001:db8::1']);
});
