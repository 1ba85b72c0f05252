import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommandError, run } from './exec.js';
import { describeError, EXIT_STATUS, exitStatusOf, isMeshdError, MeshdError } from './errors.js';

class ExampleError extends MeshdError {
  constructor(message: string) {
    super('MESHD_EXAMPLE_BROKEN', message, { kind: 'conflict' });
  }
}

test('a MeshdError subclass keeps its code, kind, name and cause; the CLI helpers read them', () => {
  const cause = new Error('inner');
  const e = new MeshdError('MESHD_EXAMPLE_FAILED', 'it broke\n  badly', { cause });
  assert.equal(e.kind, 'failed');
  assert.equal(e.cause, cause);
  assert.equal(describeError(e), 'MESHD_EXAMPLE_FAILED: it broke badly', 'one line, code first');
  assert.equal(exitStatusOf(e), EXIT_STATUS.failed);
  const sub = new ExampleError('taken');
  assert.equal(sub.name, 'ExampleError');
  assert.ok(isMeshdError(sub, 'MESHD_EXAMPLE_BROKEN'));
  assert.ok(!isMeshdError(sub, 'MESHD_EXAMPLE_FAILED'));
  assert.equal(exitStatusOf(sub), EXIT_STATUS.conflict);
  assert.equal(exitStatusOf(new Error('plain')), 1);
  assert.equal(describeError(new Error('plain')), 'plain');
  assert.ok(!isMeshdError({ code: 'MESHD_EXAMPLE_BROKEN' }), 'a look-alike object is not one');
});

test('a failed command is a CommandError with its exit status and stderr', async () => {
  await assert.rejects(
    run(process.execPath, ['-e', 'process.stderr.write("nope"); process.exit(3)']),
    (e: unknown) => isMeshdError(e, 'MESHD_COMMAND_FAILED') && e instanceof CommandError && e.exitCode === 3 && e.stderr === 'nope',
  );
  await assert.rejects(run('/nonexistent/meshd-no-such-tool', []), (e: unknown) => isMeshdError(e, 'MESHD_COMMAND_FAILED') && e instanceof CommandError && e.exitCode === null);
});
