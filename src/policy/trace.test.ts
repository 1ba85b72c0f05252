import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseScenario, traceScenario } from './trace.js';

const SCENARIO = `
endpoints:
  - {namespace: default, name: web, labels: {app: web}, ips: [10.0.1.10]}
flows:
  - {src: default/ghost, dst: default/web, dport: 80}
  - {src: node:nowhere, dst: default/web, dport: 80}
  - {src: web, dst: default/web, dport: 80}
  - {src: 10.9.9.9, dst: default/web, dport: 80}
`;

test('a flow naming an unknown peer is reported in its trace, denied, and does not stop the others', async () => {
  const r = await traceScenario(parseScenario(SCENARIO));
  assert.deepEqual(
    r.flows.map((f) => [f.verdict, f.error !== undefined, f.srcIdentity]),
    [
      ['DENIED', true, 0],
      ['DENIED', true, 0],
      ['DENIED', true, 0],
      ['ALLOWED', false, 2],
    ],
  );
});
