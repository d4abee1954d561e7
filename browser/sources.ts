/**
 * Where a package's bytes come from in a browser, as the reader's ByteSource (pack/source.ts):
 * a File or Blob read in place through `slice` (nothing is loaded whole), bytes in memory, or a
 * URL read with HTTP range requests. Each source counts the bytes it read, so the page can show
 * that opening a 200 MB package read a few KiB.
 */
import type { ByteSource, PayloadHasher } from '../pack/source.js';
import { BrowserError } from '../spec/errors.js';

export interface CountingSource extends ByteSource {
  /** Bytes handed to the reader so far. */
  readonly bytesRead: number;
  /** Bytes loaded from where the package lives (a URL source reads whole windows). */
  readonly bytesFetched: number;
}

/** Reads smaller than this load a whole window, kept for the reads that follow (headers are small and close together). */
const WINDOW = 64 * 1024;
/**
 * Windows kept (1 MiB at most). Opening prefetches one per local header: with fewer kept than a
 * package has files (the OCR package has 11), the first windows were evicted before the manifest
 * read that needs them and loaded again, more or less often depending on timing.
 */
const WINDOWS_KEPT = 16;

/**
 * Positional reads over a source where each access costs a round trip (a Blob slice crosses to the
 * browser's process, a range request to a server): a read smaller than WINDOW loads the window it
 * starts (the next header usually lies in it), larger reads load exactly what they ask.
 */
abstract class WindowedSource implements CountingSource {
  bytesRead = 0;
  bytesFetched = 0;
  private readonly windows = new Map<number, Uint8Array>();
  /** Windows being loaded ahead of their reads (prefetch), by start. */
  private readonly loading = new Map<number, Promise<Uint8Array>>();
  abstract readonly name: string;
  abstract readonly size: number;

  /** Exactly the bytes [from, to). */
  protected abstract load(from: number, to: number): Promise<Uint8Array>;

  /** Exactly the bytes [from, from + into.length), into `into`. */
  protected async loadInto(into: Uint8Array, from: number): Promise<void> {
    into.set(await this.load(from, from + into.length));
  }

  protected keep(from: number, bytes: Uint8Array): void {
    if (this.windows.size >= WINDOWS_KEPT) this.windows.delete(this.windows.keys().next().value!);
    this.windows.set(from, bytes);
  }

  private cached(position: number, length: number): Uint8Array | null {
    for (const [start, bytes] of this.windows)
      if (position >= start && position + length <= start + bytes.length)
        return bytes.subarray(position - start, position - start + length);
    return null;
  }

  /** The window a small read at `position` loads: the one it starts, kept whole inside the source. */
  private windowAt(position: number): [number, number] {
    const from = Math.max(0, Math.min(position, this.size - WINDOW));
    return [from, Math.min(this.size, from + WINDOW)];
  }

  /**
   * Starts loading the windows of the headers the reader reads next, all at once: the same windows
   * its reads would load one round trip after another, no more than are kept.
   */
  prefetch(positions: readonly number[]): void {
    for (const position of positions) {
      if (this.windows.size + this.loading.size >= WINDOWS_KEPT) return;
      if (position >= this.size || this.cached(position, 1) || this.ahead(position, 1)) continue;
      const [from, to] = this.windowAt(position);
      const p = this.load(from, to).then((got) => {
        this.bytesFetched += got.length;
        this.keep(from, got);
        return got;
      });
      this.loading.set(from, p);
      p.then(
        () => this.loading.delete(from),
        () => this.loading.delete(from), // the read that wanted it loads it again, and reports
      );
    }
  }

  /** A window being loaded that will hold [position, position + length). */
  private ahead(position: number, length: number): [number, Promise<Uint8Array>] | null {
    for (const [start, p] of this.loading)
      if (position >= start && position + length <= Math.min(this.size, start + WINDOW)) return [start, p];
    return null;
  }

  /** A window kept or loading whose bytes start at or before `position` and reach past it. */
  private windowHolding(position: number): { start: number; length: number; bytes: Promise<Uint8Array> } | null {
    for (const [start, bytes] of this.windows)
      if (position >= start && position < start + bytes.length)
        return { start, length: bytes.length, bytes: Promise.resolve(bytes) };
    for (const [start, p] of this.loading) {
      const length = Math.min(this.size, start + WINDOW) - start;
      if (position >= start && position < start + length) return { start, length, bytes: p };
    }
    return null;
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    const end = Math.min(this.size, position + length);
    if (end <= position) return { bytesRead: 0 };
    let bytes = this.cached(position, end - position);
    const ahead = bytes ? null : this.ahead(position, end - position);
    if (ahead) {
      const got = await ahead[1].catch(() => null);
      if (got) bytes = got.subarray(position - ahead[0], end - ahead[0]);
    }
    if (!bytes && end - position >= WINDOW) {
      // A large read (a payload for running, an inline file being checked) lands in the caller's
      // memory. Its start often lies in the window loaded (or loading) for the header before it:
      // that part is copied from there and only the rest loaded, at once (each byte fetched once).
      const head = this.windowHolding(position);
      const split = head ? Math.min(end, head.start + head.length) : position;
      const rest =
        split < end
          ? this.loadInto(buffer.subarray(offset + split - position, offset + end - position), split)
          : Promise.resolve();
      const got = head && (await head.bytes.catch(() => null));
      if (head && got && got.length >= split - head.start)
        buffer.set(got.subarray(position - head.start, split - head.start), offset);
      else if (split > position) {
        // the window failed to load: its part is loaded here
        await this.loadInto(buffer.subarray(offset, offset + split - position), position);
        this.bytesFetched += split - position;
      }
      await rest;
      this.bytesFetched += end - split;
      this.bytesRead += end - position;
      return { bytesRead: end - position };
    }
    if (!bytes) {
      const [from, to] = this.windowAt(position);
      const got = await this.load(from, to);
      this.bytesFetched += got.length;
      this.keep(from, got);
      bytes = got.subarray(position - from, end - from);
    }
    buffer.set(bytes, offset);
    this.bytesRead += bytes.length;
    return { bytesRead: bytes.length };
  }

  async close(): Promise<void> {
    this.windows.clear();
    this.loading.clear();
  }
}

export class BlobSource extends WindowedSource {
  /**
   * Block-sized buffers made by this source so far. Reads through the Blob's stream reuse them, so
   * this stays at the most reads at once (IN_FLIGHT blocks hashing, a few loads), whatever the size read.
   */
  buffersMade = 0;
  /** BYOB reads that failed or never answered (a read never answered keeps its buffer); each block was read again through chunks. */
  byobStalls = 0;
  /** Buffers free for the next read. */
  private readonly free: ArrayBuffer[] = [];

  constructor(
    private readonly blob: Blob,
    readonly name: string = blob instanceof File ? blob.name : 'blob',
    /**
     * Read large ranges into reused buffers through the Blob's stream. Without `Blob.stream()` (or
     * with false) each read is a fresh ArrayBuffer from `slice().arrayBuffer()`, memory the browser
     * only takes back at a later garbage collection: ~17 blocks of 4 MiB piled up in Chromium while
     * verifying, where the reused buffers keep IN_FLIGHT.
     */
    private readonly reuse: boolean = blobStreams(),
    /** Hash through BYOB readers where the Blob's stream is a byte stream (false: its chunks, copied). */
    private readonly byob: boolean = reuse && byteStreams(),
  ) {
    super();
  }

  get size(): number {
    return this.blob.size;
  }

  protected async load(from: number, to: number): Promise<Uint8Array> {
    const bytes = new Uint8Array(await this.blob.slice(from, to).arrayBuffer());
    if (bytes.length !== to - from) throw new Error('package shrank after it was opened');
    return bytes;
  }

  /** Large reads stream into the caller's memory instead of a fresh copy of the whole range. */
  protected override async loadInto(into: Uint8Array, from: number): Promise<void> {
    if (!this.reuse) return super.loadInto(into, from);
    await this.streamInto(into, from);
  }

  /** Fills the first `length` bytes of a pooled buffer with [from, from + length); the buffer is the caller's to give back. */
  private async fill(from: number, length: number): Promise<ArrayBuffer> {
    if (this.byob && !byobStalled) {
      const filled = await this.fillByob(from, length);
      if (filled) return filled;
      // a BYOB read stalled or failed: this page reads Blobs through their chunks from now on
      byobStalled = true;
    }
    const buffer = this.take(length);
    try {
      await this.streamInto(new Uint8Array(buffer, 0, length), from);
    } catch (e) {
      this.giveBack(buffer);
      throw e;
    }
    return buffer;
  }

  /**
   * The same through a BYOB reader: the Blob's bytes land in the pooled buffer itself, so hashing
   * allocates nothing a garbage collection must take back. Chromium 156, verifying a 200 MB package:
   * the renderer grew ~20 MiB against 57–111 with the stream's chunks copied, and read faster.
   * Chromium 156's Blob byte streams are fragile, and only this form held (4,000 block reads of an
   * in-memory Blob, 5,000 of a File from disk): reads of at most BYOB_READ bytes (views of a whole
   * 4 MiB block failed with "network error" after ~350 reads of an in-memory Blob), exactly the range
   * read, then the lock released (cancelling the reader, or reading on to its end, stalled the next
   * reads within a few blocks). Even so, a Blob from `fetch().blob()` had a BYOB read never answer
   * after 400–800 block reads, while slices and chunk streams of it still read: a read with no answer
   * in BYOB_STALL_MS returns null, and the page reads through chunks from then on.
   */
  private async fillByob(from: number, length: number): Promise<ArrayBuffer | null> {
    const reader = this.blob
      .slice(from, from + length)
      .stream()
      .getReader({ mode: 'byob' });
    // the buffer moves into each read and comes back with its bytes (the old one is detached)
    let buffer: ArrayBuffer = this.take(length);
    let got = 0;
    let stalled = false;
    try {
      while (got < length) {
        const read = reader.read(new Uint8Array(buffer, got, Math.min(length - got, BYOB_READ)));
        let timer: ReturnType<typeof setTimeout> | undefined;
        const r = await Promise.race([
          read,
          new Promise<null>((resolve) => {
            timer = setTimeout(() => resolve(null), BYOB_STALL_MS);
          }),
        ]).finally(() => clearTimeout(timer));
        // No answer: the read is left pending (with the buffer it holds) and the block read again by the caller.
        if (!r) {
          stalled = true;
          this.byobStalls++;
          return null;
        }
        const { value, done } = r;
        if (value) buffer = value.buffer as ArrayBuffer;
        if (done || !value) break;
        got += value.byteLength;
      }
    } catch {
      // A read that fails (Chromium's "network error" above) is read again through chunks too: a
      // real read error shows there.
      if (!(buffer as ArrayBuffer & { detached?: boolean }).detached) this.giveBack(buffer);
      this.byobStalls++;
      return null;
    } finally {
      if (!stalled) reader.releaseLock();
    }
    if (got !== length) {
      this.giveBack(buffer);
      throw new Error('package shrank after it was opened');
    }
    return buffer;
  }

  /**
   * Exactly [from, from + into.length) of the Blob into `into`, through its stream read to its end
   * (cancelled if a read fails). Its chunks are still fresh allocations: verifying a 200 MB model grew
   * Chromium's RSS by 74–107 MiB, against 91–114 with a fresh slice per block. A BYOB reader straight
   * into the pooled buffers allocated nothing, but stalled every later read of the Blob in Chromium
   * 156 after a few hundred block reads.
   */
  private async streamInto(into: Uint8Array, from: number): Promise<void> {
    const reader = this.blob
      .slice(from, from + into.length)
      .stream()
      .getReader();
    let got = 0;
    let ended = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (got + value.length > into.length) throw new Error('package changed after it was opened');
        into.set(value, got);
        got += value.length;
      }
      ended = true;
    } finally {
      if (!ended) await reader.cancel().catch(() => {});
      reader.releaseLock();
    }
    if (got !== into.length) throw new Error('package shrank after it was opened');
  }

  private take(length: number): ArrayBuffer {
    const k = this.free.findIndex((b) => b.byteLength >= length);
    if (k >= 0) return this.free.splice(k, 1)[0];
    this.buffersMade++;
    return new ArrayBuffer(Math.max(length, BLOCK));
  }

  private giveBack(buffer: ArrayBuffer): void {
    if (this.free.length < IN_FLIGHT) this.free.push(buffer);
  }

  /**
   * Block digests straight from the Blob, at most IN_FLIGHT blocks at once: each block is read into
   * a reused buffer (or, without Blob streams, a fresh slice) and handed to WebCrypto, which copies
   * it (memory stays a few blocks whatever the size). Blocks only (spec/FORMAT.md §10.1).
   */
  hasher(): PayloadHasher {
    const lanes: Promise<void>[] = [];
    const digest = async (from: number, to: number): Promise<string> => {
      if (this.reuse) {
        const buffer = await this.fill(from, to - from);
        this.bytesRead += to - from;
        this.bytesFetched += to - from;
        try {
          return hex(await crypto.subtle.digest('SHA-256', new Uint8Array(buffer, 0, to - from)));
        } finally {
          this.giveBack(buffer);
        }
      }
      const data = await this.blob.slice(from, to).arrayBuffer();
      if (data.byteLength !== to - from) throw new Error('package shrank after it was opened');
      this.bytesRead += data.byteLength;
      this.bytesFetched += data.byteLength;
      return hex(await crypto.subtle.digest('SHA-256', data));
    };
    return {
      blocks: async (offset, length, blockSize) => {
        const out: Promise<string>[] = [];
        for (let p = 0; p < length; p += blockSize) {
          const from = offset + p;
          const to = offset + Math.min(length, p + blockSize);
          // A bounded number of blocks in flight: wait for a lane before starting the next one.
          while (lanes.length >= IN_FLIGHT) await Promise.race(lanes);
          const job = digest(from, to);
          const lane: Promise<void> = job.then(
            () => void lanes.splice(lanes.indexOf(lane), 1),
            () => void lanes.splice(lanes.indexOf(lane), 1),
          );
          lanes.push(lane);
          out.push(job);
        }
        return Promise.all(out);
      },
      [Symbol.dispose]: () => {},
    };
  }

  override async close(): Promise<void> {
    this.free.length = 0;
    await super.close();
  }
}

/** Blocks hashed at once from a Blob (4 MiB each). */
const IN_FLIGHT = 4;
/** The size of a reused buffer (a block of the usual block size). */
const BLOCK = 4 * 1024 * 1024;

/** Bytes asked of one BYOB read (a block takes a few). */
const BYOB_READ = 1 << 20;
/** A BYOB read with no answer after this long is taken as stalled (a disk read of 1 MiB takes milliseconds). */
const BYOB_STALL_MS = 2000;
/** Set once a BYOB read stalled in this page: later reads go through chunks. */
let byobStalled = false;

let byteStreamsKnown: boolean | undefined;
/** Whether a Blob's stream takes a BYOB reader (a byte stream: Chromium, Firefox, Safari 17+). */
export function byteStreams(): boolean {
  if (byteStreamsKnown === undefined) {
    try {
      new Blob([]).stream().getReader({ mode: 'byob' }).releaseLock();
      byteStreamsKnown = true;
    } catch {
      byteStreamsKnown = false;
    }
  }
  return byteStreamsKnown;
}

/** Whether this browser has `Blob.stream()` (every current one does). */
export function blobStreams(): boolean {
  return typeof Blob !== 'undefined' && typeof Blob.prototype.stream === 'function';
}

const hex = (d: ArrayBuffer) => Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, '0')).join('');

/**
 * A package on a web server, read with `Range` requests: the server must answer 206 (a 200 with
 * the whole body is refused, not downloaded) and keep the same validator (ETag or Last-Modified)
 * for every request, so one package is read throughout.
 */
export class UrlSource extends WindowedSource {
  requests = 0;

  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly validator: string | null,
    tail: Uint8Array,
    private readonly init: RequestInit,
  ) {
    super();
    // The first response (the file's last bytes) is kept: the end record and central directory are there.
    this.keep(size - tail.length, tail);
  }

  static async open(url: string, init: RequestInit = {}): Promise<UrlSource> {
    const r = await UrlSource.fetchRange(url, `bytes=-${WINDOW}`, init, null, true);
    // An empty file has no last bytes to give (416 with its size, 0): the reader says what that is.
    if (r.status === 416 && /^bytes \*\/0$/.test(r.headers.get('Content-Range') ?? ''))
      return new UrlSource(url, 0, UrlSource.validatorOf(r), new Uint8Array(0), init);
    const total = /\/(\d+)$/.exec(r.headers.get('Content-Range') ?? '')?.[1];
    if (total === undefined)
      throw new BrowserError('E_BROWSER_FETCH', `${url}: no total size in Content-Range`, { url, reason: 'no-range' });
    const tail = new Uint8Array(await r.arrayBuffer());
    const s = new UrlSource(url, Number(total), UrlSource.validatorOf(r), tail, init);
    s.requests = 1;
    s.bytesFetched = tail.length;
    return s;
  }

  private static validatorOf(r: Response): string | null {
    return r.headers.get('ETag') ?? r.headers.get('Last-Modified');
  }

  private static async fetchRange(
    url: string,
    range: string,
    init: RequestInit,
    validator: string | null,
    first = false,
  ): Promise<Response> {
    let r: Response;
    try {
      // Past the HTTP cache: it would hold the concurrent range requests of one URL behind each
      // other's cache entry and revalidate them (each byte is checked against the manifest anyway).
      r = await fetch(url, { cache: 'no-store', ...init, headers: { ...(init.headers ?? {}), Range: range } });
    } catch (e) {
      throw new BrowserError('E_BROWSER_FETCH', `${url}: ${(e as Error).message}`, { url, reason: 'network' });
    }
    if (first && r.status === 416) return r;
    if (r.status !== 206) {
      void r.body?.cancel();
      throw new BrowserError(
        'E_BROWSER_FETCH',
        r.ok
          ? `${url}: the server does not answer range requests (status ${r.status}); serve the package with range support`
          : `${url}: HTTP status ${r.status}`,
        { url, status: r.status, reason: r.ok ? 'no-range' : 'status' },
      );
    }
    if (validator !== null && UrlSource.validatorOf(r) !== validator) {
      void r.body?.cancel();
      throw new BrowserError('E_BROWSER_FETCH', `${url} changed while it was being read`, { url, reason: 'changed' });
    }
    return r;
  }

  protected async load(from: number, to: number): Promise<Uint8Array> {
    this.requests++;
    const r = await UrlSource.fetchRange(this.name, `bytes=${from}-${to - 1}`, this.init, this.validator);
    const got = new Uint8Array(await r.arrayBuffer());
    if (got.length !== to - from)
      throw new BrowserError('E_BROWSER_FETCH', `${this.name}: asked for ${to - from} bytes, got ${got.length}`, {
        url: this.name,
        reason: 'short',
      });
    return got;
  }
}

/** The source for what a caller hands the browser entry. */
export async function sourceOf(
  input: Blob | ArrayBuffer | Uint8Array | string | URL,
  init?: RequestInit,
): Promise<CountingSource> {
  if (input instanceof Blob) return new BlobSource(input);
  if (input instanceof ArrayBuffer || input instanceof Uint8Array)
    return new BlobSource(new Blob([input as Uint8Array<ArrayBuffer>]), 'bytes');
  if (typeof input === 'string' || input instanceof URL) return UrlSource.open(String(input), init);
  throw new BrowserError('E_BROWSER_UNSUPPORTED', 'open a File, Blob, ArrayBuffer, Uint8Array or URL');
}
