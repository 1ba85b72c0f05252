/**
 * Errors raised by the xDS package. Callers branch on `code` (a stable
 * string), never on the message.
 */
export type XdsErrorCode =
  | 'PROTO_LOAD' // Envoy's .proto files could not be loaded
  | 'RESOURCE_INVALID' // a resource does not encode into its protobuf type
  | 'UNKNOWN_TYPE' // a type URL that is not one of the five xDS resource types
  | 'SNAPSHOT_INVALID' // a snapshot fails validation (duplicate names, wrong @type)
  | 'SNAPSHOT_INCONSISTENT' // a referenced route configuration or load assignment is missing
  | 'SNAPSHOT_FILE' // a snapshot file cannot be read or parsed
  | 'LISTEN_ADDRESS' // a --listen value that is not unix:PATH or a loopback HOST:PORT
  | 'SOCKET_IN_USE' // another live server answers on the unix socket path
  | 'NOT_A_SOCKET' // the unix socket path exists and is not a socket
  | 'NACKED' // Envoy rejected the version being waited for
  | 'ACK_TIMEOUT' // the version was not ACKed in time
  | 'ABORTED'; // a wait was aborted by its signal or the server closed

export class XdsError extends Error {
  override readonly name = 'XdsError';
  constructor(
    readonly code: XdsErrorCode,
    message: string,
    /** For RESOURCE_INVALID/SNAPSHOT_*: every problem, each starting with its field path. */
    readonly problems: readonly string[] = [],
  ) {
    super(message);
  }
}

export function isXdsError(e: unknown, code?: XdsErrorCode): e is XdsError {
  return e instanceof XdsError && (code === undefined || e.code === code);
}
