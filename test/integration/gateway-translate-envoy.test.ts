/**
 * Every golden case's translation judged by a real Envoy (`--mode
 * validate`): the dynamic resources are turned into their static
 * equivalents (route configurations inlined into their connection
 * managers, EDS clusters given their load assignments, SDS secrets
 * static), so what Envoy checks is exactly what it would receive over xDS.
 * Envoy must accept every case, including those whose input is bad: bad
 * input must never become a configuration Envoy rejects.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { findEnvoy } from '../../envoy/binary.js';
import { goldenCases, runCase } from '../../src/gateway/golden.js';
import { translate } from '../../src/gateway/translate.js';

type Json = Record<string, unknown>;

const obj = (x: unknown): Json => (typeof x === 'object' && x !== null && !Array.isArray(x) ? Object.fromEntries(Object.entries(x)) : {});
const arr = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);

function stripType(r: Json): Json {
  const { '@type': _t, ...rest } = r;
  return rest;
}

/** The static equivalent of a translation (see the module comment). */
export function staticBootstrap(res: ReturnType<typeof translate>): Json {
  const routes = new Map(res.routes.map((r) => [String(r.name), stripType(r)]));
  const loads = new Map(res.endpoints.map((e) => [String(e.cluster_name), stripType(e)]));
  // SDS config → a reference to a static secret of the same name (the JSON is rebuilt, never mutated).
  const staticize = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(staticize);
    if (typeof x !== 'object' || x === null) return x;
    const o = obj(x);
    if ('rds' in o) {
      const { rds, ...rest } = o;
      return { ...Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, staticize(v)])), route_config: routes.get(String(obj(rds).route_config_name)) };
    }
    if ('sds_config' in o) return { name: o.name };
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, staticize(v)]));
  };
  const clusters = res.clusters.map((c) => {
    const { eds_cluster_config: _e, type: _t, ...rest } = stripType(c);
    return { ...rest, type: 'STATIC', load_assignment: loads.get(String(c.name)) };
  });
  return {
    node: { id: 'validate', cluster: 'meshd' },
    static_resources: {
      listeners: res.listeners.map((l) => staticize(stripType(l))),
      clusters: [...clusters, { name: 'meshd-als', type: 'STATIC', load_assignment: { cluster_name: 'meshd-als', endpoints: [] } }],
      secrets: res.secrets.map(stripType),
    },
  };
}

test('Envoy accepts the translation of every golden case', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-gw-validate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cases = goldenCases();
  assert.ok(cases.length >= 15, 'the golden cases are there');
  for (const c of cases) {
    const res = translate(runCase(c).model, { accessLog: true });
    const file = join(dir, `${c}.json`);
    writeFileSync(file, JSON.stringify(staticBootstrap(res)));
    try {
      await promisify(execFile)(findEnvoy().path, ['--mode', 'validate', '-c', file, '--log-level', 'error'], { timeout: 60_000 });
    } catch (e) {
      const stderr = typeof e === 'object' && e !== null && 'stderr' in e ? String(e.stderr) : String(e);
      assert.fail(`${c}: Envoy rejects the translation: ${stderr.slice(-2000)}`);
    }
    // The listeners of the case are all there (nothing was silently lost on the way).
    assert.equal(arr(obj(staticBootstrap(res).static_resources).listeners).length, res.listeners.length);
  }
});
