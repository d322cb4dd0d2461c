/**
 * Length-delimited messages on top of a connection's byte stream: each message is a u32
 * big-endian length followed by that many bytes.
 *
 * @example
 * ```ts
 * const messages = messageChannel(conn);
 * await messages.send(new TextEncoder().encode("hello"));
 * for await (const message of messages) console.log(message.length);
 * await messages.close(); // half-closes the connection's writable
 * ```
 * @module
 */

/** Default and hard cap on one message's size (16 MiB). */
export const MAX_MESSAGE_SIZE = 16 * 1024 * 1024;

/** A message view of a byte-stream connection. */
export interface MessageChannel extends AsyncIterable<Uint8Array> {
  /** Send one message; waits under backpressure. @throws {RangeError} when too large */
  send(message: Uint8Array): Promise<void>;
  /** The next message, or null at end of stream. @throws {SyntaxError} on a truncated or oversized frame */
  receive(): Promise<Uint8Array | null>;
  /** Close the sending side (FIN); receiving continues. */
  close(): Promise<void>;
}

/** Wrap anything with `readable`/`writable` byte streams (a Quantum connection). */
export function messageChannel(
  conn: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> },
  options: { maxMessageSize?: number } = {},
): MessageChannel {
  const maxSize = options.maxMessageSize ?? MAX_MESSAGE_SIZE;
  const writer = conn.writable.getWriter();
  const reader = conn.readable.getReader();
  let buffered: Uint8Array[] = [];
  let bufferedBytes = 0;
  let ended = false;

  async function fill(n: number): Promise<boolean> {
    while (bufferedBytes < n) {
      if (ended) return false;
      const { value, done } = await reader.read();
      if (done) {
        ended = true;
        return false;
      }
      buffered.push(value);
      bufferedBytes += value.length;
    }
    return true;
  }

  function take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let offset = 0;
    while (offset < n) {
      const chunk = buffered[0]!;
      const k = Math.min(chunk.length, n - offset);
      out.set(chunk.subarray(0, k), offset);
      offset += k;
      if (k === chunk.length) buffered.shift();
      else buffered[0] = chunk.subarray(k);
    }
    bufferedBytes -= n;
    return out;
  }

  async function receive(): Promise<Uint8Array | null> {
    if (!(await fill(4))) {
      if (bufferedBytes === 0) return null;
      throw new SyntaxError("Cannot decode message: stream ended inside a length prefix");
    }
    const header = take(4);
    const length = new DataView(header.buffer).getUint32(0);
    if (length > maxSize) {
      throw new SyntaxError(`Cannot decode message: length ${length} exceeds ${maxSize}`);
    }
    if (!(await fill(length))) {
      throw new SyntaxError("Cannot decode message: stream ended inside a message");
    }
    return take(length);
  }

  return {
    async send(message) {
      if (message.length > maxSize) {
        throw new RangeError(`Message of ${message.length} bytes exceeds ${maxSize}`);
      }
      const frame = new Uint8Array(4 + message.length);
      new DataView(frame.buffer).setUint32(0, message.length);
      frame.set(message, 4);
      await writer.write(frame);
    },
    receive,
    async close() {
      await writer.close();
    },
    async *[Symbol.asyncIterator]() {
      while (true) {
        const message = await receive();
        if (message === null) {
          buffered = [];
          return;
        }
        yield message;
      }
    },
  };
}
