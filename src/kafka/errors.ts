/**
 * Errors of the Kafka codec and processor.
 * - MESHD_KAFKA_MALFORMED: bytes that are not a well-formed Kafka frame or
 *   message (truncated, a length past the end, a negative size): the
 *   connection is closed, never passed through.
 * - MESHD_KAFKA_UNSUPPORTED: a well-formed request this codec does not read
 *   (an API version above what the processor advertised): closed as well.
 * - MESHD_KAFKA_FRAME_TOO_LARGE: a frame above the processor's size limit.
 */
import { MeshdError } from '../util/errors.js';

export type KafkaErrorCode = 'MESHD_KAFKA_MALFORMED' | 'MESHD_KAFKA_UNSUPPORTED' | 'MESHD_KAFKA_FRAME_TOO_LARGE';

export class KafkaError extends MeshdError {
  constructor(code: KafkaErrorCode, message: string) {
    super(code, message, { kind: 'invalid' });
  }
}
