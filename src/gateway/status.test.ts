import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCase } from './golden.js';
import { CONTROLLER_NAME } from './model.js';
import { statusPatches, withNack, type StatusPatch } from './status.js';
import { z } from 'zod';
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

/** The objects as the API server holds them after `patches` (merge patches replace status lists whole). */
function afterWrites(objs: Resource[], patches: StatusPatch[]): Resource[] {
  const written = objs.map((o) => {
    const p = patches.find((x) => x.object.endsWith(`/${o.metadata.name}`) && x.object.startsWith(o.kind));
    const prev: object = 'status' in o && typeof o.status === 'object' && o.status !== null ? o.status : {};
    return p ? ({ ...o, status: { ...prev, ...p.body.status } } as unknown) : o;
  });
  return parseObjectsYaml(written.map((w) => JSON.stringify(w)).join('\n---\n'), 'written');
}

test('status is written for meshd\'s objects only, and not again once the objects hold it', () => {
  const objs = objectsOf('missing-backend');
  const { model } = runCase('missing-backend');
  const first = statusPatches(model.status, statusObjects(objs), CONTROLLER_NAME, '2026-01-01T00:00:00Z');
  assert.deepEqual(first.map((p) => p.object).sort(), ['Gateway/default/gw', 'GatewayClass/meshd', 'HTTPRoute/default/web']);
  // Nothing more to write, even an hour later.
  const again = statusPatches(model.status, statusObjects(afterWrites(objs, first)), CONTROLLER_NAME, '2026-01-01T01:00:00Z');
  assert.deepEqual(again, []);
});

test('conditions of types meshd does not set survive its writes unchanged, and alone cause no write', () => {
  const foreign = { type: 'example.com/Audited', status: 'True' as const, reason: 'Seeded', message: '', observedGeneration: 1, lastTransitionTime: '2025-06-01T00:00:00Z' };
  // A stale condition of meshd's (old generation) beside the foreign one, on the Gateway and on its listener.
  const stale = { type: 'Accepted', status: 'True' as const, reason: 'Accepted', message: 'old', observedGeneration: 1, lastTransitionTime: '2025-06-01T00:00:00Z' };
  const objs = objectsOf('missing-backend').map((o): Resource =>
    o.kind === 'Gateway'
      ? { ...o, status: { addresses: [], conditions: [stale, foreign], listeners: [{ name: 'http', attachedRoutes: 0, supportedKinds: [], conditions: [foreign, stale] }] } }
      : o.kind === 'GatewayClass'
        ? { ...o, status: { conditions: [foreign] } }
        : o,
  );
  const { model } = runCase('missing-backend');
  const first = statusPatches(model.status, statusObjects(objs), CONTROLLER_NAME, '2026-01-01T00:00:00Z');
  const gw = first.find((p) => p.object === 'Gateway/default/gw')?.body.status;
  assert.ok(gw);
  const GwStatus = z.object({ conditions: z.array(z.object({ type: z.string(), observedGeneration: z.number() }).passthrough()), listeners: z.array(z.object({ conditions: z.array(z.object({ type: z.string() }).passthrough()) })) });
  const g = GwStatus.parse(gw);
  assert.deepEqual(g.conditions.filter((c) => c.type === foreign.type), [foreign]);
  assert.deepEqual(g.listeners[0]?.conditions.filter((c) => c.type === foreign.type), [foreign]);
  // meshd's own stale condition was replaced, not kept beside the new one.
  assert.deepEqual(g.conditions.filter((c) => c.type === 'Accepted').map((c) => c.observedGeneration), [2]);
  const gc = GwStatus.shape.conditions.parse((first.find((p) => p.object === 'GatewayClass/meshd')?.body.status as { conditions?: unknown } | undefined)?.conditions);
  assert.deepEqual(gc.filter((c) => c.type === foreign.type), [foreign]);
  // Written once: the foreign conditions do not make meshd's status look different.
  assert.deepEqual(statusPatches(model.status, statusObjects(afterWrites(objs, first)), CONTROLLER_NAME, '2026-01-01T01:00:00Z'), []);
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
