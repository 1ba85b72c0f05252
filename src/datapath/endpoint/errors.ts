/**
 * The endpoint datapath's coded errors. Every write path (policy map,
 * ipcache, endpoint table) is all-or-nothing: when one of these is thrown the
 * kernel still holds what it held before the call, and `detail` says which
 * endpoint, revision or map was refused.
 *
 *   try { dp.updatePolicy(p); } catch (e) { if (isMeshdError(e, 'MESHD_POLICY_MAP_FULL')) keepOld(); }
 */
import { type ErrorKind, MeshdError } from '../../util/errors.js';

export type DatapathErrorCode =
  | 'MESHD_POLICY_MAP_FULL'
  | 'MESHD_ENDPOINT_UNKNOWN'
  | 'MESHD_ENDPOINT_TABLE_FULL'
  | 'MESHD_MAP_WRITE_FAILED'
  | 'MESHD_DATAPATH_CLOSED'
  | 'MESHD_DATAPATH_CONFIG_INVALID'
  | 'MESHD_DATAPATH_PINNED_MAP_MISMATCH';

const KIND: Readonly<Record<DatapathErrorCode, ErrorKind>> = {
  MESHD_POLICY_MAP_FULL: 'failed',
  MESHD_ENDPOINT_UNKNOWN: 'not-found',
  MESHD_ENDPOINT_TABLE_FULL: 'failed',
  MESHD_MAP_WRITE_FAILED: 'failed',
  MESHD_DATAPATH_CLOSED: 'unavailable',
  MESHD_DATAPATH_CONFIG_INVALID: 'invalid',
  MESHD_DATAPATH_PINNED_MAP_MISMATCH: 'conflict',
};

export class DatapathError extends MeshdError {
  declare readonly code: DatapathErrorCode;

  constructor(
    code: DatapathErrorCode,
    message: string,
    /** What was refused (endpoint, revision, map, needed, capacity): for logs and status, never parsed from the message. */
    readonly detail: Readonly<Record<string, number | string>> = {},
    cause?: unknown,
  ) {
    super(code, message, { kind: KIND[code], cause });
  }
}
