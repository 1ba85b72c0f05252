/**
 * Kafka framing: every request and response is an int32 size followed by
 * that many bytes. `FrameSplitter` takes the TCP stream in whatever chunks it
 * arrives and hands back whole frames (without the size); the rest waits for
 * the next chunk. A negative size, or one above `maxFrameBytes`, throws
 * KafkaError — the stream cannot be resynchronised after it.
 */
import { KafkaError } from './errors.js';

/** Kafka's default socket.request.max.bytes. */
export const DEFAULT_MAX_FRAME_BYTES = 100 * 1024 * 1024;

export class FrameSplitter {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes held back (an incomplete frame). */
  get buffered(): number {
    return this.pending.length;
  }

  push(chunk: Buffer): Buffer[] {
    const buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Buffer[] = [];
    let at = 0;
    while (buf.length - at >= 4) {
      const size = buf.readInt32BE(at);
      if (size < 0) throw new KafkaError('MESHD_KAFKA_MALFORMED', `negative frame size ${size}`);
      if (size > this.maxFrameBytes) throw new KafkaError('MESHD_KAFKA_FRAME_TOO_LARGE', `frame of ${size} bytes (limit ${this.maxFrameBytes})`);
      if (buf.length - at - 4 < size) break;
      frames.push(buf.subarray(at + 4, at + 4 + size));
      at += 4 + size;
    }
    this.pending = at === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(at));
    return frames;
  }
}

export function withSize(frame: Buffer): Buffer {
  const size = Buffer.alloc(4);
  size.writeInt32BE(frame.length);
  return Buffer.concat([size, frame]);
}
