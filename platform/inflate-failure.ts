/**
 * Why raw inflate failed: the output would pass the cap, or the stream is not valid deflate. One
 * class for platform/index.ts and its browser twin (browser/platform.ts), so the reader's
 * `instanceof` holds on both.
 */
export class InflateFailure extends Error {
  constructor(
    readonly reason: 'too-large' | 'corrupt',
    message: string,
  ) {
    super(message);
  }
}
