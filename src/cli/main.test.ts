import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { repoPath } from '../util/paths.js';
import { allCommands, main } from './main.js';

const bin = repoPath('bin', 'meshd.mjs');

test('meshd --version prints the version from package.json', () => {
  const pkg = JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { version: string };
  const out = execFileSync(process.execPath, [bin, '--version'], { encoding: 'utf8' });
  assert.equal(out.trim(), pkg.version);
});

test('npx --no-install meshd resolves the package bin from the repository root', () => {
  const pkg = JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { version: string };
  const out = execFileSync('npx', ['--no-install', 'meshd', '--version'], { cwd: repoPath(), encoding: 'utf8' });
  assert.equal(out.trim(), pkg.version);
});

test('meshd help lists doctor; an unknown command is a usage error (exit 2)', () => {
  const help = execFileSync(process.execPath, [bin, 'help'], { encoding: 'utf8' });
  assert.match(help, /doctor/);
  const bad = spawnSync(process.execPath, [bin, 'no-such-command'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^MESHD_CLI_USAGE: unknown command "no-such-command"/);
});

/** Runs main in this process with captured output. */
async function meshdIn(...argv: string[]): Promise<{ status: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const status = await main(argv, { out: (t) => void (out += t), err: (t) => void (err += t) });
  return { status, out, err };
}

test('every command and subcommand has --help and -h', async () => {
  const all = await allCommands();
  assert.ok(all.length >= 20, `${all.length} commands`);
  for (const c of all) {
    const words = c.spec.name.split(' ');
    for (const flag of ['--help', '-h']) {
      const r = await meshdIn(...words, flag);
      assert.equal(r.status, 0, `${c.spec.name} ${flag}: ${r.err}`);
      assert.ok(r.out.startsWith(`Usage: meshd ${c.spec.name}`), `${c.spec.name} ${flag}: ${r.out}`);
      assert.match(r.out, /-h, --help/);
    }
  }
  for (const group of new Set(all.map((c) => c.spec.name.split(' ')[0] ?? ''))) {
    const r = await meshdIn(group, '--help');
    assert.equal(r.status, 0);
    assert.ok(r.out.startsWith(`Usage: meshd ${group}`), r.out);
  }
});

test('an unknown option on any command is a usage error (exit 2) that names the option', async () => {
  for (const c of await allCommands()) {
    const r = await meshdIn(...c.spec.name.split(' '), '--no-such-flag');
    assert.equal(r.status, 2, `${c.spec.name}: ${r.err}`);
    assert.equal(r.out, '');
    assert.match(r.err, /^MESHD_CLI_USAGE: .*unknown option --no-such-flag/, c.spec.name);
    assert.equal(r.err.trimEnd().split('\n').length, 1, 'one line');
  }
  // Missing values, values given to flags, extra arguments, unknown output formats, unknown subcommands.
  for (const argv of [
    ['lb', 'list', '--pin-dir'],
    ['policy', 'trace', '--check=yes'],
    ['status', 'extra'],
    ['endpoint', 'get'],
    ['doctor', '-o', 'xml'],
    ['lb', 'frobnicate'],
    ['cni', 'install', '--conf-dir', 'x'],
    ['cni', 'install', '--conf-dir', 'x', '--bin-dir', 'y', '--exclusive', 'maybe'],
    ['agent', '--set', 'novalue'],
    ['xds', 'serve'],
  ]) {
    const r = await meshdIn(...argv);
    assert.equal(r.status, 2, `${argv.join(' ')}: ${r.err}`);
    assert.match(r.err, /^MESHD_CLI_USAGE: /, argv.join(' '));
  }
  const named = await meshdIn('cni', 'install', '--conf-dir', 'x', '--bin-dir', 'y', '--exclusive', 'maybe');
  assert.match(named.err, /--exclusive: /);
});

test('meshd agent takes configuration keys as options and checks them against the configuration schema', async () => {
  const bad = await meshdIn('agent', '--envoy.enabled=maybe', '--standalone', '.');
  assert.equal(bad.status, 3, bad.err);
  assert.match(bad.err, /^MESHD_CONFIG_INVALID: .*envoy\.enabled/);
  const badSet = await meshdIn('agent', '--set', 'no.such.key=1', '--standalone', '.');
  assert.equal(badSet.status, 3, badSet.err);
  assert.match(badSet.err, /^MESHD_CONFIG_UNKNOWN_KEY: .*no\.such\.key/);
  // A valid key passes the parser and the schema; without --standalone and with no cluster configuration
  // (no --kubeconfig, no KUBECONFIG, no service account) the agent refuses to start, saying so.
  const kubeconfig = process.env.KUBECONFIG;
  delete process.env.KUBECONFIG;
  try {
    const noSource = await meshdIn('agent', '--envoy.enabled=false', '--set', 'log.level=debug');
    assert.equal(noSource.status, 4, noSource.err);
    assert.match(noSource.err, /^MESHD_K8S_NO_CONFIG: .*--standalone DIR/);
  } finally {
    if (kubeconfig !== undefined) process.env.KUBECONFIG = kubeconfig;
  }
  const both = await meshdIn('agent', '--standalone', '.', '--kubeconfig', 'x');
  assert.equal(both.status, 2, both.err);
});

test('-o json and -o yaml print the same data', async () => {
  const scenario = repoPath('examples', 'trace', 'demo-scenario.yaml');
  const json = await meshdIn('policy', 'trace', '--scenario', scenario, '--dump', '-o', 'json');
  const yaml = await meshdIn('policy', 'trace', '--scenario', scenario, '--dump', '--output=yaml');
  assert.equal(json.status, 0, json.err);
  assert.equal(yaml.status, 0, yaml.err);
  const data: unknown = JSON.parse(json.out);
  assert.deepEqual(parseYaml(yaml.out), data);
  assert.ok(typeof data === 'object' && data !== null && 'flows' in data && Array.isArray(data.flows) && data.flows.length === 6);
  const policies = repoPath('examples', 'policies');
  const vj = await meshdIn('policy', 'validate', policies, '-o', 'json');
  const vy = await meshdIn('policy', 'validate', policies, '-o', 'yaml');
  assert.equal(vj.status, 0, vj.out);
  assert.deepEqual(parseYaml(vy.out), JSON.parse(vj.out));
  assert.deepEqual(JSON.parse(vj.out).problems, []);
});

test('the meshd process prints a failed command as one "code: message" line and exits with its status', () => {
  const r = spawnSync(process.execPath, [bin, 'lb', 'list', '--bogus'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'MESHD_CLI_USAGE: meshd lb list: unknown option --bogus; see "meshd lb list --help"\n');
});
