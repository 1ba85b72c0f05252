import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCase } from './golden.js';
import { CONTROLLER_NAME } from './model.js';
import { statusPatches, withNack } from './status.js';
import { parseObjectsYaml } from './golden.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GOLDEN_DIR } from './golden.js';
import type { Resource } from '../k8s/kinds.js';

function objectsOf(c: string): Resource[] {
  return parseObjectsYaml(readFileSync(join(GOLDEN_DIR, c, 'input.yaml'), 'utf8'), c);
}

function statusObjects(objs: Resource[]) {
  const of = <K extends Resource['kind']>(k: K) => objs.filter((o): o is Extract<Resource, { kind: K }> => o.kind === k);
  return { gatewayClasses: of('GatewayClass'), gateways: of('Gateway'), httpRoutes: of('HTTPRoute'), grpcRoutes: of('GRPCRoute') };
}

test('status is written for meshd\'s objects only, and not again once the objects hold it', () => {
  const objs = objectsOf('missing-backend');
  const { model } = runCase('missing-backend');
  const first = statusPatches(model.status, statusObjects(objs), CONTROLLER_NAME, '2026-01-01T00:00:00Z');
  assert.deepEqual(first.map((p) => p.object).sort(), ['Gateway/default/gw', 'GatewayClass/meshd', 'HTTPRoute/default/web']);
  // The objects as the API server holds them after the writes: nothing more to write, even an hour later.
  const written = objs.map((o) => {
    const p = first.find((x) => x.object.endsWith(`/${o.metadata.name}`) && x.object.startsWith(o.kind));
    return p ? ({ ...o, status: p.body.status } as unknown) : o;
  });
  const again = statusPatches(model.status, statusObjects(parseObjectsYaml(written.map((w) => JSON.stringify(w)).join('\n---\n'), 'written')), CONTROLLER_NAME, '2026-01-01T01:00:00Z');
  assert.deepEqual(again, []);
});

test('a route keeps the status entries of other controllers', () => {
  const objs = objectsOf('missing-backend').map((o) =>
    o.kind === 'HTTPRoute' ? { ...o, status: { parents: [{ parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'x' }, controllerName: 'example.com/other', conditions: [] }] } } : o,
  );
  const { model } = runCase('missing-backend');
  const p = statusPatches(model.status, statusObjects(objs), CONTROLLER_NAME, 'now').find((x) => x.object === 'HTTPRoute/default/web');
  const parents = p?.body.status.parents;
  assert.ok(Array.isArray(parents));
  assert.equal(parents.length, 2);
});

test('a NACK makes every Gateway not Programmed (reason Invalid)', () => {
  const { model } = runCase('path-matches');
  const s = withNack(model.status, 'boom');
  const c = s.gateways.get('default/gw')?.conditions.find((x) => x.type === 'Programmed');
  assert.equal(c?.status, 'False');
  assert.equal(c?.reason, 'Invalid');
});
