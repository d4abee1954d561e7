/**
 * The end of a one-shot command (`run`, `bench`) once its result is out: wait until stdout and
 * stderr have handed every byte to the OS, run the process's 'exit' listeners, and end the process
 * without its teardown (onnxruntime's and V8's destructors, thread joins: ~100 ms of CPU after a
 * cold OCR run, measured with /usr/bin/time). Only after the command has finished: every file it
 * writes (optimised-model cache, anti-rollback state, annotated images) is written and renamed
 * before its promise settles. Without the native addon the process ends the ordinary way.
 */
import type { Writable } from 'node:stream';

/** Resolves once everything written to `stream` so far has been handed to the OS (or failed to be). */
export function flushed(stream: Writable): Promise<void> {
  if (stream.destroyed || stream.writableEnded) return Promise.resolve();
  // writes complete in order, so an empty write's callback comes after every earlier write's
  return new Promise((resolve) => stream.write('', () => resolve()));
}

export async function exitWhenFlushed(): Promise<void> {
  const { exitNow } = await import('../native/index.js');
  const now = exitNow();
  if (!now) return;
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  // registered last, so every other 'exit' listener runs first, as on an ordinary exit
  process.once('exit', (code) => now(code));
  process.exit();
}
