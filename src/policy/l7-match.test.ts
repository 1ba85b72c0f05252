import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import { compileFullMatch, dnsPatternRegExp, matchDnsSelector, matchHttp, matchKafka, parseHeaderRule } from './l7-match.js';

test('DNS matchPattern wildcards follow Cilium: "*" alone is everything, elsewhere one label', () => {
  assert.ok(dnsPatternRegExp('*').test('a.b.c'));
  assert.ok(matchDnsSelector({ matchPattern: '*.example.com' }, 'www.example.com.'));
  assert.ok(matchDnsSelector({ matchPattern: '*.example.com' }, 'WWW.Example.COM'));
  assert.ok(!matchDnsSelector({ matchPattern: '*.example.com' }, 'a.b.example.com'));
  assert.ok(!matchDnsSelector({ matchPattern: '*.example.com' }, 'example.com'));
  assert.ok(matchDnsSelector({ matchPattern: 'api-*.example.com' }, 'api-.example.com'));
  assert.ok(matchDnsSelector({ matchPattern: 'api-*.example.com' }, 'api-v2_x.example.com'));
  assert.ok(!matchDnsSelector({ matchPattern: 'api*.example.com' }, 'apixexample.com'));
  assert.ok(matchDnsSelector({ matchName: 'Example.com.' }, 'example.com'));
  assert.ok(!matchDnsSelector({ matchName: 'example.com' }, 'www.example.com'));
});

test('HTTP fields are anchored extended regexes; headers by presence or exact value', () => {
  assert.ok(matchHttp({ method: 'GET|HEAD', path: '/a/[0-9]+' }, { method: 'HEAD', path: '/a/12' }));
  assert.ok(!matchHttp({ path: '/a' }, { path: '/a/b' }));
  assert.ok(!matchHttp({ path: '/a' }, { path: 'x/a' }));
  assert.ok(!matchHttp({ method: 'GET' }, {}));
  assert.ok(matchHttp({}, {}));
  assert.ok(matchHttp({ method: '(?i)get' }, { method: 'GET' }));
  assert.throws(() => compileFullMatch('/a(?=b)'), (e: unknown) => isMeshdError(e, 'MESHD_POLICY_REGEX_UNSUPPORTED') && e.message.includes('lookaround'));
  assert.throws(() => compileFullMatch('(a)\\1'), (e: unknown) => isMeshdError(e, 'MESHD_POLICY_REGEX_UNSUPPORTED') && e.message.includes('backreferences'));
  assert.throws(() => compileFullMatch('/a(['), (e: unknown) => isMeshdError(e, 'MESHD_POLICY_REGEX_INVALID') && e.cause instanceof SyntaxError);
  assert.deepEqual(parseHeaderRule('X-A'), { name: 'X-A' });
  assert.deepEqual(parseHeaderRule('X-A:  b c '), { name: 'X-A', value: 'b c' });
  assert.ok(matchHttp({ headers: [{ name: 'X-A', value: 'b' }] }, { headers: { 'x-a': 'b' } }));
  assert.ok(!matchHttp({ headers: [{ name: 'X-A', value: 'b' }] }, { headers: { 'x-a': 'bb' } }));
  assert.ok(matchHttp({ headerMatches: [{ name: 'X-B', value: '1', mismatch: 'ADD' }] }, {}));
  assert.ok(!matchHttp({ headerMatches: [{ name: 'X-B', value: '1' }] }, { headers: { 'X-B': '2' } }));
});

test('Kafka roles expand to their API keys', () => {
  assert.ok(matchKafka({ role: 'produce' }, { apiKey: 'produce', topic: 't' }));
  assert.ok(matchKafka({ role: 'produce' }, { apiKey: 'apiversions' }));
  assert.ok(!matchKafka({ role: 'produce' }, { apiKey: 'fetch' }));
  assert.ok(matchKafka({ role: 'consume', topic: 't' }, { apiKey: 'heartbeat' }));
  assert.ok(!matchKafka({ role: 'consume', topic: 't' }, { apiKey: 'fetch', topic: 'u' }));
  assert.ok(matchKafka({ apiKey: 'Fetch', apiVersion: '4' }, { apiKey: 'fetch', apiVersion: 4 }));
  assert.ok(!matchKafka({ clientID: 'a' }, { apiKey: 'fetch', clientID: 'b' }));
});
