import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffMs } from './reflector.js';

test('backoff doubles from the initial delay up to the cap, with at most 20% jitter either way', () => {
  const b = { initialMs: 500, maxMs: 30_000 };
  for (let i = 0; i < 200; i++) {
    const first = backoffMs(1, b);
    assert.ok(first >= 400 && first <= 600, `first ${first}`);
    const third = backoffMs(3, b);
    assert.ok(third >= 1_600 && third <= 2_400, `third ${third}`);
    const late = backoffMs(30, b);
    assert.ok(late >= 24_000 && late <= 36_000, `capped ${late}`);
  }
});
