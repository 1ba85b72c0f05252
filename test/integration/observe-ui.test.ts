/**
 * `meshd ui` in a real headless Chromium (Debian's chromium, driven over the
 * DevTools protocol with undici's WebSocket): the UI follows a real observer
 * API (FlowObserver + ObserverServer on a unix socket) holding the demo's
 * flows, made by the flow parser from datapath and access-log records; the
 * page shows the demo's workloads and their edges, and a new denied flow
 * turns up red on the map and in the table within 2 s. Screenshots are saved
 * under the system temp directory (meshd-ui-screenshots/).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { WebSocket } from 'undici';
import { z } from 'zod';
import type { FlowRecord } from '../../src/datapath/endpoint/flow-events.js';
import { FlowObserver } from '../../src/observe/observer.js';
import { ObserverServer } from '../../src/observe/observer-server.js';
import { FlowParser, type EndpointResolver } from '../../src/observe/parser.js';
import { FlowUi } from '../../src/observe/ui.js';

const PODS: Record<string, { name: string; identity: number }> = {
  '10.244.9.2': { name: 'client', identity: 256 },
  '10.244.9.3': { name: 'api', identity: 257 },
  '10.244.9.4': { name: 'intruder', identity: 258 },
};
const resolver: EndpointResolver = {
  peer: (ip, identity) => {
    const p = PODS[ip];
    return p ? { identity: identity ?? p.identity, labels: [`k8s:app=${p.name}`, 'k8s:io.kubernetes.pod.namespace=default'], namespace: 'default', podName: p.name } : { identity: identity ?? 2, labels: ['reserved:world'] };
  },
  service: () => undefined,
  decision: () => ({ allowedBy: [], deniedBy: [] }),
};

const rec = (src: string, dst: string, dport: number, type: FlowRecord['type']): FlowRecord => ({
  monotonicNs: process.hrtime.bigint(),
  type,
  direction: 'ingress',
  ...(type === 'drop' ? { dropReason: 'POLICY_DEFAULT_DENY', verdict: 'DENY' as const } : { verdict: type === 'redirect' ? ('REDIRECT' as const) : ('ALLOW' as const) }),
  endpointNumericId: 2,
  ifindex: 5,
  srcIdentity: PODS[src]?.identity ?? 2,
  dstIdentity: PODS[dst]?.identity ?? 2,
  family: 4,
  protocol: 6,
  src: { ip: src, port: 40000 + Math.floor(Math.random() * 1000) },
  dst: { ip: dst, port: dport },
});

/** The smallest DevTools client: one page, Runtime.evaluate and Page.captureScreenshot. */
async function devtools(ws: WebSocket) {
  let id = 0;
  const pending = new Map<number, (v: unknown) => void>();
  ws.addEventListener('message', (ev) => {
    const m = z.object({ id: z.number().optional(), result: z.unknown().optional() }).safeParse(JSON.parse(String(ev.data)));
    if (m.success && m.data.id !== undefined) pending.get(m.data.id)?.(m.data.result);
  });
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', () => reject(new Error('devtools websocket failed')));
  });
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve) => {
      id += 1;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  return {
    evaluate: async (expression: string): Promise<unknown> => {
      const r = z.object({ result: z.object({ value: z.unknown().optional() }) }).parse(await send('Runtime.evaluate', { expression, returnByValue: true }));
      return r.result.value;
    },
    screenshot: async (file: string) => {
      const r = z.object({ data: z.string() }).parse(await send('Page.captureScreenshot', { format: 'png' }));
      writeFileSync(file, Buffer.from(r.data, 'base64'));
    },
  };
}

test('meshd ui in headless Chromium: the demo workloads and edges; a denied flow turns red within 2 s', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-ui-'));
  // Hooks run in the order they were added: this one first ends Chromium (which writes its profile
  // in `dir` until it exits), then removes the directory.
  let stopChromium: () => Promise<void> = () => Promise.resolve();
  t.after(async () => {
    await stopChromium();
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  });
  const obs = new FlowObserver({ capacity: 1023, nodeName: 'test-node', version: 'test' });
  const server = new ObserverServer({ observer: obs, socketPath: join(dir, 'hubble.sock') });
  await server.listen();
  t.after(() => server.close());
  const parser = new FlowParser({ nodeName: 'test-node', resolver });
  obs.add([rec('10.244.9.2', '10.244.9.3', 8080, 'redirect'), rec('10.244.9.2', '10.244.9.3', 9090, 'verdict'), rec('10.244.9.4', '10.244.9.3', 8080, 'drop')].map((r) => parser.fromDatapath(r)));
  const l7 = (path: string, status: number, verdict: 'FORWARDED' | 'DENIED') =>
    parser.fromHttp({ time: new Date().toISOString(), logName: 'default_api_ingress_id256', source: '10.244.9.2:40100', destination: '10.244.9.3:8080', method: 'GET', authority: '10.244.9.3:8080', path, status, details: verdict === 'DENIED' ? 'rbac_access_denied_matched_policy[none]' : 'via_upstream', verdict, latencyNs: 1_000_000 });
  obs.add([...l7('/api/v1/users', 200, 'FORWARDED'), ...l7('/admin', 403, 'DENIED')]);

  const ui = new FlowUi({ server: `unix://${join(dir, 'hubble.sock')}`, port: 0, host: '127.0.0.1' });
  await ui.start();
  t.after(() => ui.close());

  const profile = join(dir, 'chromium-profile');
  const chromium = spawn(
    'chromium',
    ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--remote-debugging-port=0', '--window-size=1400,700', `http://127.0.0.1:${ui.port}/`],
    { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
  );
  const exited = new Promise<void>((resolve) => chromium.once('exit', () => resolve()));
  // Chromium forks helpers into its own process group (detached): end the group, then make sure of the main process.
  stopChromium = async () => {
    if (chromium.pid === undefined) return;
    for (const target of [-chromium.pid, chromium.pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (chromium.exitCode === null && chromium.signalCode === null) await exited;
  };
  const wsBrowser = await new Promise<string>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`chromium did not start: ${err}`)), 60_000);
    chromium.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  const debugPort = new URL(wsBrowser).port;
  const Targets = z.array(z.object({ type: z.string(), url: z.string(), webSocketDebuggerUrl: z.string().optional() }));
  let pageWs: string | undefined;
  for (let i = 0; i < 100 && !pageWs; i += 1) {
    const list = Targets.parse(await (await fetch(`http://127.0.0.1:${debugPort}/json/list`)).json());
    pageWs = list.find((x) => x.type === 'page' && x.url.startsWith(`http://127.0.0.1:${ui.port}`))?.webSocketDebuggerUrl;
    if (!pageWs) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(pageWs, 'the UI page is open in Chromium');
  const ws = new WebSocket(pageWs);
  t.after(() => ws.close());
  const page = await devtools(ws);
  const waitFor = async (expr: string, ms: number): Promise<boolean> => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if ((await page.evaluate(expr)) === true) return true;
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  };

  // The demo's workloads and their edges: client → api (forwarded, L7 detail), intruder → api (dropped, red).
  assert.ok(await waitFor(`["default/client","default/api","default/intruder"].every((id) => document.querySelector('.node[data-id="' + id + '"]'))`, 15_000), 'the three workloads are on the map');
  // The UI may still be reading the store's history: wait until every edge of the history has its final state.
  const complete = `(() => { const e = document.querySelector('path.edge[data-from="default/client"][data-port="8080"]'); return document.querySelectorAll("path.edge").length === 3 && !!e && e.textContent.includes("/admin") && e.textContent.includes("/api/v1/users"); })()`;
  assert.ok(await waitFor(complete, 15_000), 'the three edges of the history, with their HTTP detail');
  const edges = z.array(z.object({ from: z.string(), to: z.string(), port: z.string(), cls: z.string(), color: z.string(), title: z.string() })).parse(
    await page.evaluate(`[...document.querySelectorAll("path.edge")].map((e) => ({ from: e.dataset.from, to: e.dataset.to, port: e.dataset.port, cls: e.getAttribute("class"), color: getComputedStyle(e).stroke, title: e.textContent }))`),
  );
  const edge = (from: string, port: string) => edges.find((e) => e.from === from && e.to === 'default/api' && e.port === port);
  assert.equal(edge('default/client', '8080')?.color, 'rgb(220, 38, 38)', 'client → api:8080 had a denied request (403): red');
  assert.match(edge('default/client', '8080')?.title ?? '', /GET \/admin → 403/);
  assert.match(edge('default/client', '8080')?.title ?? '', /GET \/api\/v1\/users → 200/);
  assert.equal(edge('default/client', '9090')?.color, 'rgb(22, 163, 74)', 'client → api:9090 forwarded: green');
  assert.equal(edge('default/intruder', '8080')?.color, 'rgb(220, 38, 38)', 'intruder → api:8080 dropped: red');
  const shots = join(tmpdir(), 'meshd-ui-screenshots');
  mkdirSync(shots, { recursive: true });
  await page.screenshot(join(shots, 'observe-ui-map.png'));

  // A new denial: intruder → api:9090 appears red, on the map and in the table, within 2 s.
  const before = Date.now();
  obs.add([parser.fromDatapath(rec('10.244.9.4', '10.244.9.3', 9090, 'drop'))]);
  const seen = await waitFor(
    `(() => { const e = document.querySelector('path.edge[data-from="default/intruder"][data-port="9090"]'); const row = [...document.querySelectorAll("#flows tr.DROPPED")].find((r) => r.textContent.includes("default/api:9090")); return !!e && getComputedStyle(e).stroke === "rgb(220, 38, 38)" && !!row && getComputedStyle(row.cells[0]).color === "rgb(220, 38, 38)"; })()`,
    2000,
  );
  const took = Date.now() - before;
  await page.screenshot(join(shots, 'observe-ui-denied.png'));
  assert.ok(seen, `the denied flow was red on the map and in the table within 2 s (waited ${took} ms)`);
});
