/**
 * Errors raised by the xDS package. Callers branch on `code` (a stable
 * string), never on the message.
 *
 * XdsError extends meshd's one error base from src/util/errors.ts: that
 * module imports nothing, so depending on it keeps xds/ free of the agent
 * (it is the one import from outside xds/).
 *
 *   try { server.setSnapshot('n1', snap); } catch (e) { if (isXdsError(e, 'MESHD_XDS_SNAPSHOT_INVALID')) report(e.problems); }
 */
import { MeshdError, type ErrorKind } from '../src/util/errors.js';

const CODES = {
  MESHD_XDS_PROTO_LOAD: 'failed', // Envoy's .proto files could not be loaded
  MESHD_XDS_RESOURCE_INVALID: 'invalid', // a resource does not encode into its protobuf type
  MESHD_XDS_UNKNOWN_TYPE: 'invalid', // a type URL that is not one of the five xDS resource types
  MESHD_XDS_SNAPSHOT_INVALID: 'invalid', // a snapshot fails validation (duplicate names, wrong @type)
  MESHD_XDS_SNAPSHOT_INCONSISTENT: 'invalid', // a referenced route configuration or load assignment is missing
  MESHD_XDS_SNAPSHOT_FILE: 'invalid', // a snapshot file cannot be read or parsed
  MESHD_XDS_LISTEN_ADDRESS: 'usage', // a --listen value that is not unix:PATH or a loopback HOST:PORT
  MESHD_XDS_ALREADY_LISTENING: 'conflict', // listen() called twice on one server
  MESHD_XDS_SOCKET_IN_USE: 'conflict', // another live server answers on the unix socket path
  MESHD_XDS_NOT_A_SOCKET: 'conflict', // the unix socket path exists and is not a socket
  MESHD_XDS_NACKED: 'failed', // Envoy rejected the version being waited for
  MESHD_XDS_ACK_TIMEOUT: 'unavailable', // the version was not ACKed in time
  MESHD_XDS_ABORTED: 'failed', // a wait was aborted by its signal or the server closed
} as const satisfies Record<string, ErrorKind>;

export type XdsErrorCode = keyof typeof CODES;

export class XdsError extends MeshdError {
  declare readonly code: XdsErrorCode;

  constructor(
    code: XdsErrorCode,
    message: string,
    /** For RESOURCE_INVALID/SNAPSHOT_*: every problem, each starting with its field path. */
    readonly problems: readonly string[] = [],
    opts: { cause?: unknown } = {},
  ) {
    super(code, message, { kind: CODES[code], cause: opts.cause });
  }
}

export function isXdsError(e: unknown, code?: XdsErrorCode): e is XdsError {
  return e instanceof XdsError && (code === undefined || e.code === code);
}
