/** Waiting for a condition of the development cluster (a pod's route, an agent's state) with a bound. */
import assert from 'node:assert/strict';

/** Polls a condition (every 150 ms, up to `ms`) until it holds; a throw counts as "not yet" and is named in the failure. */
export async function eventually(what: string, fn: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  await until(what, async () => ((await fn()) ? true : undefined), ms);
}

/**
 * Polls `fn` (every 150 ms, up to `ms`) until it returns something other
 * than undefined, and returns that; a throw counts as "not yet" and the last
 * one is named in the failure.
 */
export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  assert.fail(`timed out waiting for ${what}${last instanceof Error ? ` (${last.message})` : ''}`);
}
