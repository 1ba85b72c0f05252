import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reportsLoss } from './routing-watch.js';

test("routing watch: only a deletion naming the proxy's table counts as a loss", () => {
  assert.equal(reportsLoss('Deleted 9:\tfrom all fwmark 0xb00/0xf00 lookup 2004', 2004), true);
  assert.equal(reportsLoss('Deleted local default dev lo table 2004 proto boot scope host ', 2004), true);
  assert.equal(reportsLoss('9:\tfrom all fwmark 0xb00/0xf00 lookup 2004', 2004), false, 'an added rule');
  assert.equal(reportsLoss('Deleted 10.244.3.7 dev lxc1234 scope link', 2004), false, 'a pod route');
  assert.equal(reportsLoss('Deleted 9:\tfrom all fwmark 0xb00/0xf00 lookup 20045', 2004), false, 'another table');
  assert.equal(reportsLoss('Deleted local default dev lo table 12004 scope host', 2004), false, 'another table');
});
