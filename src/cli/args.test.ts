import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import { DEFAULT_API_SOCKET, parseCommandLine, type CommandSpec } from './args.js';

const spec = {
  name: 'demo run',
  summary: 'a command for the parser tests',
  args: 'NAME',
  positionals: { min: 1, max: 2 },
  options: {
    dir: { type: 'string', value: 'DIR', help: 'a directory' },
    set: { type: 'string', multiple: true, value: 'K=V', help: 'a pair' },
    check: { type: 'boolean', short: 'c', help: 'a flag' },
  },
  output: true,
  agent: true,
} as const satisfies CommandSpec;

const usage = (argv: string[], what: RegExp) =>
  assert.throws(
    () => parseCommandLine(spec, argv, {}),
    (e: unknown) => isMeshdError(e, 'MESHD_CLI_USAGE') && e.kind === 'usage' && what.test(e.message),
  );

test('options in every spelling parseArgs knows, typed by the spec', () => {
  const a = parseCommandLine(spec, ['x', '--dir=/a', '--set', 'k=1', '--set=k=2', '-c', '-ojson', '--api-socket', '/s', 'y'], {});
  assert.ok(a !== 'help');
  assert.deepEqual(a.positionals, ['x', 'y']);
  assert.equal(a.string('dir'), '/a');
  assert.deepEqual(a.strings('set'), ['k=1', 'k=2']);
  assert.equal(a.flag('check'), true);
  assert.equal(a.output, 'json');
  assert.equal(a.apiSocket, '/s');
  // Defaults: text output, the environment's socket, then the built-in one.
  const b = parseCommandLine(spec, ['x', '--', '--not-an-option'], { MESHD_API_SOCKET: '/env.sock' });
  assert.ok(b !== 'help');
  assert.deepEqual(b.positionals, ['x', '--not-an-option']);
  assert.equal(b.output, 'text');
  assert.equal(b.flag('check'), false);
  assert.equal(b.apiSocket, '/env.sock');
  const c = parseCommandLine(spec, ['x'], {});
  assert.ok(c !== 'help');
  assert.equal(c.apiSocket, DEFAULT_API_SOCKET);
});

test('help wins over everything else on the line', () => {
  assert.equal(parseCommandLine(spec, ['--bogus', '-h'], {}), 'help');
  assert.equal(parseCommandLine(spec, ['--help'], {}), 'help');
});

test('usage errors name what is wrong', () => {
  usage(['x', '--bogus'], /unknown option --bogus/);
  usage(['x', '-z'], /unknown option -z/);
  usage(['x', '--dir'], /option --dir needs a value \(DIR\)/);
  usage(['x', '--check=yes'], /option --check takes no value/);
  usage([], /missing NAME/);
  usage(['x', 'y', 'z'], /unexpected argument "z"/);
  usage(['x', '-o', 'xml'], /unknown output format "xml"/);
});
