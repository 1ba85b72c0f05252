import assert from 'node:assert/strict';
import { test } from 'node:test';
import { intersectHostnames } from './ingestion.js';
import { re2FullMatch, re2Problem } from './regex.js';

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
