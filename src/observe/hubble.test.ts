import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kernelLossPoller } from './hubble.js';

test('kernel ring-buffer losses: the first reading is the baseline, each increase is reported once, a reset or an error reports nothing', () => {
  const reported: number[] = [];
  const readings: Array<bigint | undefined | Error> = [5n, 5n, 9n, undefined, 12n, 2n, new Error('closed'), 4n];
  const poll = kernelLossPoller(
    () => {
      const r = readings.shift();
      if (r instanceof Error) throw r;
      return r;
    },
    (n) => reported.push(n),
  );
  for (let i = 0; i < 8; i += 1) poll();
  assert.deepEqual(reported, [4, 3, 2]);
});
