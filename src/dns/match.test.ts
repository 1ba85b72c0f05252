import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchDnsSelector } from '../policy/l7-match.js';

test("DNS rules with Cilium's semantics: matchName, * within a label, **. for any depth, stars alone for all", () => {
  const yes = (sel: { matchName?: string; matchPattern?: string }, n: string) => assert.ok(matchDnsSelector(sel, n), `${JSON.stringify(sel)} ${n}`);
  const no = (sel: { matchName?: string; matchPattern?: string }, n: string) => assert.ok(!matchDnsSelector(sel, n), `${JSON.stringify(sel)} ${n}`);
  yes({ matchName: 'api.example.com' }, 'API.example.com.');
  yes({ matchName: 'api.example.com.' }, 'api.example.com');
  no({ matchName: 'api.example.com' }, 'www.api.example.com');
  yes({ matchPattern: '*.example.com' }, 'a.example.com');
  no({ matchPattern: '*.example.com' }, 'a.b.example.com');
  yes({ matchPattern: '**.example.com' }, 'a.example.com');
  yes({ matchPattern: '**.example.com' }, 'a.b.c.example.com');
  no({ matchPattern: '**.example.com' }, 'example.com');
  no({ matchPattern: '**.example.com' }, 'badexample.com');
  for (const all of ['*', '**', '**.', '***']) yes({ matchPattern: all }, 'anything.at.all');
  yes({ matchPattern: 'sub*.example.com' }, 'sub.example.com');
  yes({ matchPattern: 'sub*.example.com' }, 'sub-1.example.com');
  no({ matchPattern: 'sub*.example.com' }, 'sub.x.example.com');
});
