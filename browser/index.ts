/**
 * `xpkg/browser`: open, inspect, verify and run `.xpkg` packages in a web page, in place (a File or
 * Blob is read through `slice`, a URL through range requests; nothing is uploaded or loaded whole).
 * The work runs in a Worker by default; every check and error code is the Node library's own.
 *
 *   const pkg = await openPackage(file, { trust: [publicKeyText] });   // manifest + signers, ms
 *   await pkg.verify({ onProgress });                                  // every digest
 *   const { outputs } = await pkg.run({ image: imageFile });           // onnxruntime-web
 */
import { BrowserError, type ErrorJson, XpkgError } from '../spec/errors.js';
import type { Reply, Request } from './protocol.js';
import type { BrowserRunResult, Opened, PackageInput, PackageSession, Progress, SessionOptions } from './session.js';

export type { ErrorCode, ErrorJson } from '../spec/errors.js';
export { XpkgError } from '../spec/errors.js';
export { defineXpkgDrop, XpkgDropElement } from './drop-element.js';
export { isImageFile } from './file-kind.js';
export type { BrowserRunResult, Opened, PackageInput, Progress, SessionOptions, SignatureCheck } from './session.js';

export interface OpenOptions extends SessionOptions {
  /** Run in a Worker (default true); false runs on the calling thread. */
  worker?: boolean;
}

type Op = Request extends infer R ? (R extends { op: infer O } ? O : never) : never;

interface Channel {
  call(op: Op, body: Record<string, unknown>, onProgress?: (p: Progress) => void): Promise<unknown>;
}

const toError = (e: ErrorJson) => new XpkgError(e.code, e.summary, e.detail);

/** One worker per page, started on first use; a crash fails what was pending with E_BROWSER_WORKER. */
class WorkerChannel implements Channel {
  private worker: Worker | null = null;
  private next = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; progress?: (p: Progress) => void }
  >();

  start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL('./xpkg-worker.js', import.meta.url), { type: 'module', name: 'xpkg' });
    w.onmessage = (e: MessageEvent<Reply>) => {
      const m = e.data;
      const p = this.pending.get(m.id);
      if (!p) return;
      if ('progress' in m) return p.progress?.(m.progress);
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(toError(m.error));
    };
    w.onerror = (e) => {
      e.preventDefault();
      const err = new XpkgError('E_BROWSER_WORKER', `the xpkg worker failed: ${e.message || 'it could not start'}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      w.terminate();
      this.worker = null;
    };
    this.worker = w;
    return w;
  }

  call(op: Op, body: Record<string, unknown>, onProgress?: (p: Progress) => void): Promise<unknown> {
    const w = this.start();
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...(onProgress ? { progress: onProgress } : {}) });
      w.postMessage({ id, op, ...body });
    });
  }
}

/** The same operations on the calling thread (the library is loaded on first use). */
class DirectChannel implements Channel {
  private readonly sessions = new Map<number, PackageSession>();
  private next = 1;

  async call(op: Op, body: Record<string, unknown>, onProgress?: (p: Progress) => void): Promise<unknown> {
    const { PackageSession } = await import('./session.js');
    const session = () => {
      const s = this.sessions.get(body.pkg as number);
      if (!s) throw new XpkgError('E_USAGE', 'the package is closed');
      return s;
    };
    try {
      switch (op) {
        case 'open': {
          const s = await PackageSession.open(body.input as PackageInput, {
            wasmBase: new URL('./', import.meta.url).href,
            ...(body.options as SessionOptions),
          });
          const pkg = this.next++;
          this.sessions.set(pkg, s);
          return { pkg, opened: s.opened };
        }
        case 'verify':
          return await session().verify(onProgress);
        case 'prepare':
          return await session().prepare(onProgress);
        case 'run':
          return await session().run(body.inputs as Record<string, unknown>, onProgress);
        case 'runtime': {
          const { startRuntime } = await import('./ort-web.js');
          await startRuntime({ wasmBase: new URL('./', import.meta.url).href, ...(body.options as object) }).started;
          return null;
        }
        case 'close': {
          const s = this.sessions.get(body.pkg as number);
          this.sessions.delete(body.pkg as number);
          await s?.close();
          return null;
        }
      }
    } catch (e) {
      if (e instanceof XpkgError) throw e;
      const { toXpkgError } = await import('../spec/errors.js');
      throw toXpkgError(e);
    }
  }
}

let shared: WorkerChannel | null = null;
let direct: DirectChannel | null = null;

/** An opened package: what it is and who signed it are known; its payloads are read on use. */
export class XpkgPackage {
  private closed = false;

  constructor(
    private readonly channel: Channel,
    private readonly pkg: number,
    /** Name, version, id, size, variants, files, pipeline, the trust decision, and what opening cost. */
    readonly info: Opened,
  ) {}

  /** Signatures, trust and every payload digest; resolves to the Node verifier's result, or throws its code. */
  verify(
    options: { onProgress?: (p: Progress) => void } = {},
  ): Promise<import('../signing/verify-reader.js').VerifyResult> {
    return this.channel.call('verify', { pkg: this.pkg }, options.onProgress) as never;
  }

  /**
   * Loads onnxruntime-web and the models now (verified as read) instead of on the first run: a page
   * overlaps it with verify() or with the user choosing an input.
   */
  prepare(options: { onProgress?: (p: Progress) => void } = {}): Promise<void> {
    return this.channel.call('prepare', { pkg: this.pkg }, options.onProgress) as Promise<void>;
  }

  /** Runs the package: an image input may be a File/Blob, an ImageBitmap or ImageData. */
  run(
    inputs: Record<string, unknown>,
    options: { onProgress?: (p: Progress) => void } = {},
  ): Promise<BrowserRunResult> {
    return this.channel.call('run', { pkg: this.pkg, inputs }, options.onProgress) as Promise<BrowserRunResult>;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.channel.call('close', { pkg: this.pkg });
  }
}

/**
 * Starts the worker (and the library inside it) now, so that a page opening a package later does
 * not wait for it: a page calls this on load, while the user picks a file. With `runtime: true`
 * (a page about to run a package, e.g. one named in its URL) onnxruntime-web's script and WASM
 * are fetched, compiled and started too, beside the package's reads (14 MB, so only when a run is
 * expected); `threads` as in openPackage (the first start in the worker decides them).
 */
export function preload(options: { runtime?: boolean; threads?: number } = {}): void {
  const channel = (shared ??= new WorkerChannel());
  channel.start();
  if (options.runtime)
    void channel.call('runtime', { options: options.threads ? { threads: options.threads } : {} }).catch(() => {}); // a failed start is reported by the run that needs it
}

/**
 * Opens a package from a File or Blob (read in place), bytes, or a URL (range requests). Throws
 * the archive or manifest error code of a malformed package; the trust decision is in
 * `info.signatures` (verify() and run() enforce it).
 */
export async function openPackage(input: PackageInput, options: OpenOptions = {}): Promise<XpkgPackage> {
  const { worker = true, ...rest } = options;
  const channel = worker ? (shared ??= new WorkerChannel()) : (direct ??= new DirectChannel());
  // A URL is resolved against the page, not the worker's script.
  const input2 = typeof input === 'string' || input instanceof URL ? resolveUrl(String(input)) : input;
  const r = (await channel.call('open', { input: input2, options: rest })) as { pkg: number; opened: Opened };
  return new XpkgPackage(channel, r.pkg, r.opened);
}

/** A package URL against the page; one that is no URL (`http://[`) is E_BROWSER_FETCH, as one that cannot be fetched. */
function resolveUrl(url: string): string {
  try {
    return new URL(url, globalThis.location?.href).href;
  } catch {
    throw new BrowserError('E_BROWSER_FETCH', `${url} is not a URL`, { url, reason: 'url' });
  }
}

/**
 * An error as the drop page and `<xpkg-drop>` report it: its xpkg code (`E_…`), else E_INTERNAL (a
 * DOMException's numeric code, a thrown null), its message and its detail.
 */
export function errorInfo(e: unknown): { code: string; summary: string; detail?: unknown } {
  const x = (e ?? {}) as { code?: unknown; message?: unknown; detail?: unknown };
  return {
    code: typeof x.code === 'string' && /^E_[A-Z0-9_]+$/.test(x.code) ? x.code : 'E_INTERNAL',
    summary: typeof x.message === 'string' ? x.message : String(e),
    detail: x.detail,
  };
}
