import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exitStatusOf, isMeshdError } from '../../util/errors.js';
import { loadPolicyText } from './loader.js';
import { formatProblem, PolicyValidationError } from './problem.js';

test('PolicyValidationError is a coded, invalid-input MeshdError carrying every problem', () => {
  const { problems } = loadPolicyText('apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec: {endpointSelector: {}, egress: [{toCIDR: [nope]}]}\n', 'p.yaml');
  const e = new PolicyValidationError(problems);
  assert.ok(isMeshdError(e, 'MESHD_POLICY_INVALID'));
  assert.equal(exitStatusOf(e), 3);
  assert.deepEqual(
    e.problems.map((p) => [p.file, p.document, p.path, p.code]),
    [['p.yaml', 0, 'spec.egress[0].toCIDR[0]', 'INVALID_CIDR']],
  );
  assert.equal(formatProblem(problems[0] ?? { path: '', code: 'INVALID_VALUE', message: '' }).endsWith('[INVALID_CIDR]'), true);
});
