import assert from 'node:assert/strict';
import { test } from 'node:test';
import { intersectHostnames } from './ingestion.js';
import { ENVOY_MAX_PROGRAM_SIZE, re2FullMatch, re2Problem, re2ProgramSizeEstimate } from './regex.js';

test('route and listener hostnames intersect as the spec says', () => {
  assert.deepEqual(intersectHostnames(undefined, []), ['*']);
  assert.deepEqual(intersectHostnames('foo.example.com', []), ['foo.example.com']);
  assert.deepEqual(intersectHostnames('*.example.com', ['foo.example.com', 'a.b.example.com', 'example.com', 'other.org']), ['foo.example.com', 'a.b.example.com']);
  assert.deepEqual(intersectHostnames('foo.example.com', ['*.example.com']), ['foo.example.com']);
  assert.deepEqual(intersectHostnames('*.example.com', ['*.foo.example.com']), ['*.foo.example.com']);
  assert.deepEqual(intersectHostnames('*.foo.example.com', ['*.example.com']), ['*.foo.example.com']);
  assert.deepEqual(intersectHostnames('foo.example.com', ['bar.example.com']), []);
});

test('regular expressions are judged by RE2: lookaround and backreferences are refused', () => {
  assert.equal(re2Problem('/v[0-9]+/.*'), null);
  assert.notEqual(re2Problem('/(?=x)'), null);
  assert.notEqual(re2Problem('(a)\\1'), null);
  assert.notEqual(re2Problem('[unclosed'), null);
  assert.equal(re2FullMatch('/v[0-9]+', '/v12'), true);
  assert.equal(re2FullMatch('/v[0-9]+', '/v12/x'), false);
});

test('RE2 program sizes are estimated as Envoy counts them, so a pattern Envoy would refuse for its size is refused first', () => {
  // Envoy's own counts (its "RE2 program size of N" refusals), one construct at a time after a 197-instruction prefix.
  const envoy: Array<[string, number]> = [
    ['x{1,97}a', 198],
    ['x{1,97}.', 199],
    ['x{1,97}(a)', 200],
    ['x{1,97}\\w', 200],
    ['x{1,97}a{3}', 200],
    ['x{1,97}a{2,}', 200],
    ['x{1,97}x{1,40}', 276],
    ['x{1,97}.{1,20}', 256],
    ['x{1,97}é', 199],
    ['/a/[a-z]{1,50}', 106],
    ['/a/[a-z]{1,200}', 406],
  ];
  for (const [re, size] of envoy) {
    const est = re2ProgramSizeEstimate(re);
    assert.ok(est >= size && est <= size + 2, `${re}: estimated ${est}, Envoy counts ${size}`);
  }
  assert.equal(re2Problem('/(users|orders|products)/[0-9]{1,10}/details'), null);
  assert.ok(re2ProgramSizeEstimate('/a/[a-z]{1,50}') > ENVOY_MAX_PROGRAM_SIZE);
  assert.notEqual(re2Problem('/a/[a-z]{1,50}'), null);
});
