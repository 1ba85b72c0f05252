import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dropReasonName } from './drop-reasons.js';

test('unknown drop reasons are named, not thrown', () => {
  assert.equal(dropReasonName(1), 'POLICY_DENY');
  assert.equal(dropReasonName(250), 'UNKNOWN_250');
});
