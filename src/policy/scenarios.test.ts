// Every scenario under testdata/ runs through the same code path as
// `meshd policy trace --scenario` and must match the `expect` of each flow.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { repoPath } from '../util/paths.js';
import { checkExpectations, loadScenarioFile, traceScenario } from './trace.js';

const dir = repoPath('src', 'policy', 'testdata');
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();

test('scenario directory is not empty', () => {
  assert.ok(files.length >= 10, `only ${files.length} scenarios`);
});

for (const f of files) {
  test(`scenario ${f}`, async () => {
    const loaded = loadScenarioFile(`${dir}/${f}`);
    assert.ok(loaded.scenario.flows.length > 0, 'a scenario needs flows');
    for (const [i, flow] of loaded.scenario.flows.entries()) assert.ok(flow.expect, `flows[${i}] has no expect`);
    const result = await traceScenario(loaded);
    assert.deepEqual(checkExpectations(loaded, result), []);
  });
}
