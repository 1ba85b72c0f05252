import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AddressScope, NetlinkError, type AddressEvent, type HostAddress } from '../../native/netlink.js';
import { hostIdentityAddresses, watchHostAddresses } from './host-addresses.js';

const addr = (address: string, scope: number, flags = 0x80): HostAddress => ({ ifindex: 2, family: address.includes(':') ? 6 : 4, address, prefixlen: 24, scope, flags });

test('only universe- and site-scope addresses that passed duplicate address detection carry the host identity', () => {
  assert.deepEqual(
    hostIdentityAddresses([
      addr('127.0.0.1', AddressScope.host),
      addr('::1', AddressScope.host),
      addr('10.0.0.7', AddressScope.universe),
      addr('fe80::1', AddressScope.link),
      addr('169.254.3.3', AddressScope.link),
      addr('fec0::5', AddressScope.site),
      addr('2001:db8::9', AddressScope.universe, 0x08), // IFA_F_DADFAILED
      addr('2001:db8::a', AddressScope.universe, 0x40), // IFA_F_TENTATIVE: usable once DAD completes
      { ...addr('10.0.0.7', AddressScope.universe), ifindex: 3 },
    ]),
    ['10.0.0.7', '2001:db8::a', 'fec0::5'],
  );
});

/**
 * The kernel's side, scripted: `dump` answers with `now`; `notify` delivers a
 * batch of notifications as the addon does (on the event loop).
 */
function scripted(initial: HostAddress[]) {
  const state = { now: initial, dumps: 0, closed: 0 };
  let deliver: ((events: AddressEvent[]) => void) | undefined;
  let fail: ((err: NetlinkError) => void) | undefined;
  return {
    state,
    source: {
      dump: () => {
        state.dumps++;
        return state.now;
      },
      watch: (onEvents: (events: AddressEvent[]) => void, onError: (err: NetlinkError) => void) => {
        deliver = onEvents;
        fail = onError;
        return { close: () => void state.closed++ };
      },
    },
    notify: (events: AddressEvent[]) => deliver?.(events),
    error: (err: NetlinkError) => fail?.(err),
  };
}

test('a burst of notifications is one re-read after a quiet time; only a different set is reported; close is final', async () => {
  const k = scripted([addr('10.0.0.1', 0)]);
  const seen: string[][] = [];
  const errors: unknown[] = [];
  const w = watchHostAddresses({ source: k.source, debounceMs: 30, onChange: (ips) => seen.push(ips), onError: (e) => errors.push(e) });
  assert.deepEqual(w.current(), ['10.0.0.1']);
  assert.equal(k.state.dumps, 1);

  k.state.now = [addr('10.0.0.1', 0), addr('10.0.0.2', 0)];
  for (let i = 0; i < 5; i++) {
    k.notify([{ type: 'new', ...addr('10.0.0.2', 0) }]);
    await sleep(5);
  }
  assert.deepEqual(seen, [], 'nothing before the quiet time');
  await sleep(80);
  assert.equal(k.state.dumps, 2, 'one re-read for the burst');
  assert.deepEqual(seen, [['10.0.0.1', '10.0.0.2']]);
  assert.deepEqual(w.current(), ['10.0.0.1', '10.0.0.2']);

  // A notification that changes nothing the set holds (a link-local address) reports nothing.
  k.state.now = [...k.state.now, addr('fe80::2', AddressScope.link)];
  k.notify([{ type: 'new', ...addr('fe80::2', AddressScope.link) }]);
  await sleep(80);
  assert.equal(seen.length, 1);

  // Lost notifications: the re-read still finds the truth.
  k.state.now = [addr('10.0.0.2', 0)];
  k.notify([{ type: 'overrun' }]);
  await sleep(80);
  assert.deepEqual(seen.at(-1), ['10.0.0.2']);

  // An invalid notification is reported and also answered by a re-read.
  k.state.now = [addr('10.0.0.3', 0)];
  k.error(new NetlinkError('address event: unexpected shape', undefined));
  await sleep(80);
  assert.ok(errors.length === 1 && errors[0] instanceof NetlinkError && errors[0].code === 'MESHD_NETLINK_INVALID');
  assert.deepEqual(seen.at(-1), ['10.0.0.3']);

  w.close();
  w.close();
  assert.equal(k.state.closed, 1);
  k.notify([{ type: 'overrun' }]);
  await sleep(80);
  assert.equal(seen.length, 3, 'nothing after close');
});

test('a failing re-read keeps the previous set and reports the error', async () => {
  const k = scripted([addr('10.0.0.1', 0)]);
  const errors: unknown[] = [];
  const w = watchHostAddresses({ source: k.source, debounceMs: 10, onChange: () => assert.fail('no change expected'), onError: (e) => errors.push(e) });
  k.source.dump = () => {
    throw new NetlinkError('address dump: no buffer space', 105);
  };
  k.notify([{ type: 'overrun' }]);
  await sleep(50);
  w.close();
  assert.deepEqual(w.current(), ['10.0.0.1']);
  assert.ok(errors[0] instanceof NetlinkError && errors[0].code === 'MESHD_NETLINK_FAILED');
});
