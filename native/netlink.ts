/**
 * What the addon's rtnetlink functions return (native/src/netlink.cc), as
 * schemas: native/index.ts validates every record with them. This module
 * does not load the addon, so code that only handles addresses (filters,
 * tests) can import it without the compiled object.
 */
import { z } from 'zod';
import { MeshdError } from '../src/util/errors.js';

/** rtnetlink address scopes (`enum rt_scope_t`): how far an address is meaningful. */
export const AddressScope = { universe: 0, site: 200, link: 253, host: 254, nowhere: 255 } as const;

export const hostAddressSchema = z.strictObject({
  ifindex: z.number().int().positive(),
  family: z.union([z.literal(4), z.literal(6)]),
  address: z.union([z.ipv4(), z.ipv6()]),
  prefixlen: z.number().int().min(0).max(128),
  scope: z.number().int().min(0).max(255),
  flags: z.number().int().min(0),
});

/** One address of an interface, as the kernel reports it. */
export type HostAddress = z.infer<typeof hostAddressSchema>;

export const addressEventSchema = z.discriminatedUnion('type', [
  hostAddressSchema.extend({ type: z.literal('new') }),
  hostAddressSchema.extend({ type: z.literal('del') }),
  // The socket overflowed and notifications were lost: re-read the set with dumpAddresses().
  z.strictObject({ type: z.literal('overrun') }),
]);

export type AddressEvent = z.infer<typeof addressEventSchema>;

/** A netlink request failed (errno in `errno`), or the addon answered in a shape this module does not know. */
export class NetlinkError extends MeshdError {
  constructor(
    message: string,
    readonly errno: number | undefined,
    cause?: unknown,
  ) {
    super(errno === undefined ? 'MESHD_NETLINK_INVALID' : 'MESHD_NETLINK_FAILED', message, { kind: 'failed', cause });
  }
}

