/**
 * A per-user cache of the models onnxruntime optimised for this machine.
 *
 * Why: creating a session runs onnxruntime's graph optimisers (fusions, the NCHWc layout for this
 * CPU's vector width, constant folding), which on the OCR package is most of `Runner.open`'s cost
 * (~70% of session creation on a 2-core VM). onnxruntime can write the optimised graph out
 * (`optimizedModelFilePath`) and load it later with optimisation off. Entries are written in
 * onnxruntime's own format (ORT, a flatbuffer) rather than ONNX: a session reads it in place, its
 * weights used from the bytes without a protobuf parse or copy (`use_ort_model_bytes_directly`):
 * the OCR package's recogniser took ~185 ms of CPU to create instead of ~300 from the same graph in
 * ONNX (onnxruntime's start included), with the same outputs bit for bit.
 *
 * Integrity: an entry is only ever written from a model whose bytes verified against the signed
 * manifest, and is found by a key over that file's SHA-256 (from the manifest), the onnxruntime
 * version, the optimisation level, the providers and this CPU (the optimised graph may hold
 * kernels for this CPU's instruction set only). Each entry records its own SHA-256, checked on
 * every use before the session is created; a mismatch evicts the entry and
 * the model loads from the package. The folder is the user's own (0700, files 0600, refused when
 * owned by someone else or writable by others): it is as trusted as the user's home, like any
 * per-user cache, and can be deleted at any time. CPU-only sessions of single-file models only:
 * an optimised graph for another provider may hold that provider's fused nodes.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { chmod, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { arch, cpus } from 'node:os';
import { join } from 'node:path';
import { sha256Hex, sha256Moving } from '../../platform/index.js';

const FORMAT = 'xpkg-ort-cache/2';
/** The most bytes of entries kept; a store beyond it removes the least recently written ones. */
export const CACHE_LIMIT_BYTES = 1 << 30;
/** A temp file older than this was left by a process that died while writing it. */
const STALE_TEMP_MS = 60 * 60 * 1000;

export interface OrtCacheKey {
  /** onnxruntime's version: its serialised graphs are only read back by the same build. */
  runtime: string;
  /** SHA-256 of the model file, from the signed manifest. */
  model: string;
  optimization: string;
  providers: readonly string[];
}

interface Meta {
  format: string;
  sha256: string;
  size: number;
  /** hasStaticInputs() of the package's model, so a hit need not parse its protobuf again. */
  staticInputs: boolean;
}

export interface CacheHit {
  bytes: Buffer;
  /** True when the bytes are the ones stored. */
  intact: boolean;
  /** Whether every input of the model has a fixed shape (the memory pattern's switch, onnx-inputs.ts). */
  staticInputs: boolean;
}

/** The CPU the optimised graph was made for: architecture, model name and vector extensions. */
function cpuIdentity(): string {
  let flags = '';
  try {
    // x86 flags decide NCHWc block sizes and kernels; a VM moved to another host may change them
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    flags = /^flags\s*:\s*(.*)$/m.exec(info)?.[1] ?? /^Features\s*:\s*(.*)$/m.exec(info)?.[1] ?? '';
  } catch {
    // not Linux: the model name stands for the instruction set
  }
  return `${arch()} ${cpus()[0]?.model ?? ''} ${flags}`;
}

let cpuId: string | undefined;

/**
 * A file of known size in one read (fs.promises.readFile reads in 512 KiB steps, each a round trip
 * to the thread pool, ~22 for the OCR recogniser's entry, between which this thread idles). A file
 * that changed size since it was measured comes back short or is refused by its recorded size.
 */
async function readAll(path: string, size: number): Promise<Buffer> {
  await using file = await open(path, 'r');
  const bytes = Buffer.allocUnsafe(size);
  let got = 0;
  while (got < size) {
    const { bytesRead } = await file.read(bytes, got, size - got, got);
    if (bytesRead === 0) return bytes.subarray(0, got);
    got += bytesRead;
  }
  return bytes;
}

export class OrtModelCache {
  readonly dir: string;

  constructor(root: string) {
    this.dir = join(root, 'ort');
  }

  key(k: OrtCacheKey): string {
    cpuId ??= cpuIdentity();
    return createHash('sha256')
      .update(JSON.stringify([FORMAT, k.runtime, k.model, k.optimization, [...k.providers], cpuId]))
      .digest('hex');
  }

  /** The stored optimised model, or null (absent, unreadable, not ours, or its record is damaged). */
  async lookup(key: string): Promise<CacheHit | null> {
    try {
      const metaPath = join(this.dir, `${key}.json`);
      const modelPath = join(this.dir, `${key}.ort`);
      const [metaText, st] = await Promise.all([readFile(metaPath, 'utf8'), stat(modelPath)]);
      if (!this.#ours(st)) return null;
      const meta = JSON.parse(metaText) as Meta;
      if (
        meta.format !== FORMAT ||
        meta.size !== st.size ||
        !/^[0-9a-f]{64}$/.test(meta.sha256) ||
        typeof meta.staticInputs !== 'boolean'
      )
        return null;
      // node:crypto's one-shot SHA-256 (SHA-NI where the CPU has it) is ~5x faster here than
      // WebCrypto's digest, which also blocks the caller while it copies its input; on the hashing
      // thread when it runs (platform/hash-thread.ts), the bytes moved there and back
      const { bytes, hex } = await sha256Moving(await readAll(modelPath, st.size));
      const intact = hex === meta.sha256 && bytes.length === meta.size;
      return { bytes, intact, staticInputs: meta.staticInputs };
    } catch {
      return null;
    }
  }

  /**
   * A fresh path in the cache folder for onnxruntime to write the optimised model to, or null when
   * the folder cannot be made (read-only home): caching is then skipped, never an error.
   */
  prepare(key: string): string | null {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      if (!this.#ours(statSync(this.dir))) return null;
      return join(this.dir, `${key}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp.ort`);
    } catch {
      return null;
    }
  }

  /** Records the model onnxruntime wrote at `temp` under `key` (temp files + rename); best effort. */
  async commit(key: string, temp: string, staticInputs: boolean): Promise<boolean> {
    const metaTemp = `${temp}.json`;
    try {
      // onnxruntime wrote it with the umask's mode; entries are the user's alone
      await chmod(temp, 0o600);
      const bytes = await readFile(temp);
      const meta: Meta = { format: FORMAT, sha256: sha256Hex(bytes), size: bytes.length, staticInputs };
      writeFileSync(metaTemp, JSON.stringify(meta), { mode: 0o600 });
      // the model first: a record never points at a model that is not there yet
      renameSync(temp, join(this.dir, `${key}.ort`));
      renameSync(metaTemp, join(this.dir, `${key}.json`));
      await this.prune();
      return true;
    } catch {
      rmSync(temp, { force: true });
      rmSync(metaTemp, { force: true });
      return false;
    }
  }

  async evict(key: string): Promise<void> {
    await Promise.all([
      rm(join(this.dir, `${key}.json`), { force: true }),
      rm(join(this.dir, `${key}.ort`), { force: true }),
    ]).catch(() => {});
  }

  /**
   * Keeps the folder bounded (run after a store, so a cache hit pays nothing): removes entries of
   * other formats (`*.onnx` of format 1), temp files of writers that died, records without their
   * model, and the oldest entries beyond `limit` bytes. Best effort: another process may be
   * pruning or storing at the same time, and a removed entry only costs a later miss.
   */
  async prune(limit = CACHE_LIMIT_BYTES, now = Date.now()): Promise<void> {
    try {
      const names = await readdir(this.dir);
      const present = new Set(names);
      const entries: { key: string; size: number; mtime: number }[] = [];
      const drop: string[] = [];
      for (const name of names) {
        const path = join(this.dir, name);
        const st = await stat(path).catch(() => null);
        if (!st?.isFile()) continue;
        if (name.includes('.tmp.')) {
          if (now - st.mtimeMs > STALE_TEMP_MS) drop.push(name);
        } else if (name.endsWith('.ort')) {
          entries.push({ key: name.slice(0, -4), size: st.size, mtime: st.mtimeMs });
        } else if (name.endsWith('.json')) {
          if (!present.has(`${name.slice(0, -5)}.ort`)) drop.push(name);
        } else if (name.endsWith('.onnx')) drop.push(name);
      }
      entries.sort((a, b) => b.mtime - a.mtime);
      let kept = 0;
      for (const e of entries) {
        kept += e.size;
        if (kept > limit) drop.push(`${e.key}.json`, `${e.key}.ort`);
      }
      await Promise.all(drop.map((n) => rm(join(this.dir, n), { force: true })));
    } catch {
      // a folder that cannot be listed is left as it is
    }
  }

  /** Ours: a regular file or folder owned by this user that no one else can write. */
  #ours(st: { uid: number; mode: number; isFile(): boolean; isDirectory(): boolean }): boolean {
    if (!st.isFile() && !st.isDirectory()) return false;
    if (process.platform === 'win32') return true;
    return st.uid === process.getuid?.() && (st.mode & 0o022) === 0;
  }
}
