import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ciliumLbIpPool } from './cilium-lb-ip-pool.js';

const parse = (spec: unknown, apiVersion = 'cilium.io/v2') => ciliumLbIpPool.parse({ apiVersion, kind: 'CiliumLoadBalancerIPPool', metadata: { name: 'p' }, spec });
const problems = (r: ReturnType<typeof parse>) => (r.ok ? [] : r.problems.map((p) => [p.path.join('.'), p.code]));

test('both API versions are accepted verbatim', () => {
  const spec = { blocks: [{ cidr: '10.0.10.0/24' }, { cidr: '2004::/112' }, { start: '20.0.20.100', stop: '20.0.20.200' }, { start: '1.2.3.4' }], allowFirstLastIPs: 'No', disabled: false, serviceSelector: { matchLabels: { color: 'blue' } } };
  for (const v of ['cilium.io/v2', 'cilium.io/v2alpha1']) assert.ok(parse(spec, v).ok, v);
  assert.deepEqual(problems(parse(spec, 'cilium.io/v3')), [['apiVersion', 'INVALID_VALUE']]);
});

test('bad blocks are refused with the field at fault', () => {
  assert.deepEqual(
    problems(
      parse({
        blocks: [
          { cidr: '10.0.10.0/33' },
          { start: '20.0.20.9', stop: '20.0.20.1' },
          { start: 'nope' },
          { start: '20.0.20.1', stop: 'nope' },
          { cidr: '10.0.0.0/8', start: '10.0.0.1' },
          { stop: '10.0.0.1' },
        ],
      }),
    ),
    [
      ['spec.blocks.0.cidr', 'INVALID_CIDR'],
      ['spec.blocks.1.start', 'INVALID_VALUE'],
      ['spec.blocks.2.start', 'INVALID_VALUE'],
      ['spec.blocks.3.stop', 'INVALID_VALUE'],
      ['spec.blocks.4', 'INVALID_VALUE'],
      ['spec.blocks.5', 'INVALID_VALUE'],
    ],
  );
  assert.deepEqual(problems(parse({ blocks: [], cidrs: [] })), [['spec.cidrs', 'UNKNOWN_FIELD']]);
});
