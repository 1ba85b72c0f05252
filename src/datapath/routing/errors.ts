/**
 * Routing's errors. MESHD_ROUTING_TUNNEL_UNSUPPORTED: the configured
 * tunnelProtocol has no driver in this kernel (the agent does not start);
 * MESHD_ROUTING_DEVICE_FAILED: the tunnel device could not be set up;
 * MESHD_ROUTING_ROUTES_FAILED: routes to other nodes could not be written
 * (the ones in place stay).
 */
import { MeshdError, type ErrorKind } from '../../util/errors.js';

export type RoutingErrorCode = 'MESHD_ROUTING_TUNNEL_UNSUPPORTED' | 'MESHD_ROUTING_DEVICE_FAILED' | 'MESHD_ROUTING_ROUTES_FAILED';

const KIND: Readonly<Record<RoutingErrorCode, ErrorKind>> = {
  MESHD_ROUTING_TUNNEL_UNSUPPORTED: 'unavailable',
  MESHD_ROUTING_DEVICE_FAILED: 'failed',
  MESHD_ROUTING_ROUTES_FAILED: 'failed',
};

export class RoutingError extends MeshdError {
  declare readonly code: RoutingErrorCode;

  constructor(
    code: RoutingErrorCode,
    message: string,
    opts: { cause?: unknown } = {},
    /** The configuration key at fault, when one is. */
    readonly key?: string,
  ) {
    super(code, message, { kind: KIND[code], cause: opts.cause });
  }
}
