import assert from 'node:assert/strict';
import { test } from 'node:test';
import { median, spread } from './stats.js';

test('median: middle value, mean of the middle two, NaN when empty; input untouched', () => {
  const xs = [3, 1, 2];
  assert.equal(median(xs), 2);
  assert.deepEqual(xs, [3, 1, 2]);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});

test('spread: median with min–max for repeated runs, the value alone for one', () => {
  assert.equal(spread([1.234, 0.5, 2], 2), '1.23 (0.50–2.00)');
  assert.equal(spread([7], 1), '7.0');
});
