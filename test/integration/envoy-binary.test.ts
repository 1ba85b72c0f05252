/** The Envoy that setup installs into the project's virtualenv is found without any configuration. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ENVOY_BIN_ENV, findEnvoy } from '../../envoy/binary.js';

test('findEnvoy: without config or env it finds the virtualenv binary from setup', (t) => {
  const saved = process.env[ENVOY_BIN_ENV];
  delete process.env[ENVOY_BIN_ENV];
  t.after(() => {
    if (saved !== undefined) process.env[ENVOY_BIN_ENV] = saved;
  });
  const found = findEnvoy();
  assert.equal(found.source, 'venv');
  assert.match(found.path, /\.venv\/lib\/python3[^/]*\/site-packages\/envoy\/_bin\/envoy$/);
});
