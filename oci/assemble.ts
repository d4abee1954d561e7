/**
 * Writes a planned package into the cache (spec/OCI.md §3, §6): small pieces from memory, each
 * payload blob copied from a cached package that holds the same file or streamed from the source
 * straight to its offset while it is hashed. Progress per blob is journalled beside the temp file,
 * so an interrupted assembly resumes where it stopped (the bytes already there are hashed again,
 * never trusted). The result is opened with the strict reader and renamed into place.
 */
import { createHash, type Hash } from 'node:crypto';
import { type FileHandle, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { writeAllAt } from '../pack/atomic.js';
import { PackageReader } from '../pack/reader.js';
import { OciError } from '../spec/errors.js';
import { type Descriptor, hexOf, sha256 } from './artifact.js';
import type { Cache } from './cache.js';
import type { Plan } from './plan.js';
import { withRetries } from './registry.js';

/** Where blobs come from: a registry repository, an OCI layout. */
export interface BlobSource {
  where: string;
  retries: number;
  /** The blob from `offset`; the offset actually served comes back (0 when the source restarted). */
  open(desc: Descriptor, offset: number): Promise<{ stream: Readable; offset: number }>;
}

export interface TransferCounts {
  /** Bytes received from the source. */
  downloaded: number;
  /** Bytes copied from packages already in the cache. */
  reused: number;
  /** Bytes found already written by an earlier, interrupted attempt (hashed again). */
  resumed: number;
}

const CHUNK = 4 * 1024 * 1024;
const JOURNAL_EVERY = 32 * 1024 * 1024;
const WRITE_RUN = 1024 * 1024;

/** A small blob whole, size and digest checked. */
export async function fetchSmall(source: BlobSource, desc: Descriptor, limit: number): Promise<Buffer> {
  if (desc.size > limit)
    throw new OciError('E_OCI_MANIFEST', `blob ${desc.digest} of ${desc.size} bytes is over the ${limit}-byte limit`, {
      digest: desc.digest,
    });
  return withRetries(source.retries, async () => {
    const { stream } = await source.open(desc, 0);
    const parts: Buffer[] = [];
    let n = 0;
    try {
      for await (const c of stream as AsyncIterable<Buffer>) {
        n += c.length;
        if (n > desc.size) break;
        parts.push(c);
      }
    } catch (e) {
      throw new OciError('E_OCI_NETWORK', `reading ${desc.digest} from ${source.where}: ${(e as Error).message}`);
    } finally {
      stream.destroy();
    }
    const bytes = Buffer.concat(parts);
    if (bytes.length !== desc.size || sha256(bytes) !== desc.digest)
      throw new OciError('E_OCI_DIGEST', `blob ${desc.digest} from ${source.where} does not match its digest`, {
        digest: desc.digest,
        actual: sha256(bytes),
        size: bytes.length,
      });
    return bytes;
  });
}

async function hashRange(fh: FileHandle, h: Hash, at: number, length: number): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, length)));
  for (let done = 0; done < length; ) {
    const n = Math.min(buf.length, length - done);
    const { bytesRead } = await fh.read(buf, 0, n, at + done);
    if (bytesRead === 0) throw new OciError('E_OCI_CACHE', 'temp file shrank during resume');
    h.update(buf.subarray(0, bytesRead));
    done += bytesRead;
  }
}

async function pool<T>(items: T[], width: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown = null;
  const worker = async () => {
    while (next < items.length && failed === null) {
      const x = items[next++];
      await fn(x).catch((e) => {
        failed ??= e;
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  if (failed !== null) throw failed;
}

export async function assemble(
  cache: Cache,
  plan: Plan,
  name: string,
  packageId: string,
  source: BlobSource,
  onProgress?: (done: number, total: number) => void,
): Promise<TransferCounts> {
  const part = cache.tmpPath(`${name}.part`);
  const journalPath = `${part}.json`;
  // The journal belongs to exactly this plan: same pieces at the same offsets.
  const planKey = sha256(
    Buffer.from(
      JSON.stringify(plan.pieces.map((p) => ('layer' in p ? [p.at, p.layer.digest] : [p.at, sha256(p.bytes)]))),
    ),
  );
  let done: Record<number, number> = {};
  try {
    const j = JSON.parse(await readFile(journalPath, 'utf8')) as { plan: string; done: Record<number, number> };
    if (j.plan === planKey && (await stat(part)).size === plan.size) done = j.done;
  } catch {
    done = {};
  }
  const fh = await open(part, Object.keys(done).length ? 'r+' : 'w+');
  const counts: TransferCounts = { downloaded: 0, reused: 0, resumed: 0 };
  let journalWrite = Promise.resolve();
  const saveJournal = () => {
    const snapshot = JSON.stringify({ plan: planKey, done });
    journalWrite = journalWrite.then(async () => {
      await writeFile(`${journalPath}.tmp`, snapshot);
      await rename(`${journalPath}.tmp`, journalPath);
    });
    return journalWrite;
  };
  const total = plan.pieces.reduce((n, p) => n + ('layer' in p ? p.layer.size : 0), 0);
  let progress = 0;
  const advance = (n: number) => {
    progress += n;
    onProgress?.(progress, total);
  };
  try {
    await fh.truncate(plan.size);
    for (const p of plan.pieces) if (!('layer' in p)) await writeAllAt(fh, p.bytes, p.at);
    const layers = plan.pieces.flatMap((p, i) => ('layer' in p ? [{ i, at: p.at, layer: p.layer, path: p.path }] : []));
    await pool(layers, 3, async ({ i, at, layer }) => {
      let h = createHash('sha256');
      let pos = Math.min(done[i] ?? 0, layer.size);
      if (pos > 0) {
        await hashRange(fh, h, at, pos);
        counts.resumed += pos;
        advance(pos);
      }
      if (pos === 0 && layer.size > 0) {
        const local = await cache.findFile(hexOf(layer.digest));
        if (local) {
          const reader = await PackageReader.open(local.path);
          let n = 0;
          const ok = await reader
            .streamVerified(local.entry, async (c) => {
              await writeAllAt(fh, c, at + n);
              n += c.length;
            })
            .then(() => n === layer.size)
            .catch(() => false)
            .finally(() => reader.close());
          if (ok) {
            done[i] = layer.size;
            counts.reused += layer.size;
            advance(layer.size);
            return;
          }
        }
      }
      let sinceJournal = 0;
      // Received bytes are hashed at once and written in runs of WRITE_RUN bytes, one run in flight
      // while the next arrives (a write per 64 KiB network chunk cost a thread-pool round trip
      // each). `queued` counts bytes handed to the writer, `pos` bytes written: a retry resumes at `pos`.
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let queued = pos;
      let writing: Promise<void> = Promise.resolve();
      const flush = async (wait: boolean) => {
        if (pendingBytes) {
          const run = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
          const where = at + queued;
          pending = [];
          pendingBytes = 0;
          queued += run.length;
          writing = writing.then(async () => {
            await writeAllAt(fh, run, where);
            pos += run.length;
            done[i] = pos;
            sinceJournal += run.length;
            if (sinceJournal >= JOURNAL_EVERY) {
              sinceJournal = 0;
              void saveJournal();
            }
          });
        }
        if (wait || queued - pos > 4 * WRITE_RUN) await writing;
      };
      await withRetries(source.retries, async () => {
        if (pos >= layer.size) return;
        const { stream, offset } = await source.open(layer, pos);
        if (offset !== pos) {
          // The source could not resume: start this blob again.
          advance(-pos);
          pos = 0;
          queued = 0;
          h = createHash('sha256');
        }
        try {
          for await (const c of stream as AsyncIterable<Buffer>) {
            if (queued + pendingBytes + c.length > layer.size)
              throw new OciError(
                'E_OCI_DIGEST',
                `blob ${layer.digest} from ${source.where} is longer than ${layer.size} bytes`,
                {
                  digest: layer.digest,
                },
              );
            h.update(c);
            pending.push(c);
            pendingBytes += c.length;
            counts.downloaded += c.length;
            advance(c.length);
            if (pendingBytes >= WRITE_RUN) await flush(false);
          }
        } catch (e) {
          stream.destroy();
          if (e instanceof OciError && e.code === 'E_OCI_DIGEST') throw e;
          await flush(true); // what arrived before the break is good: a retry resumes after it
          if (e instanceof OciError) throw e;
          throw new OciError(
            'E_OCI_NETWORK',
            `download of ${layer.digest} from ${source.where} broke off at byte ${pos}: ${(e as Error).message}`,
            { digest: layer.digest, at: pos },
          );
        }
        await flush(true);
        if (pos < layer.size)
          throw new OciError(
            'E_OCI_NETWORK',
            `download of ${layer.digest} from ${source.where} ended at byte ${pos} of ${layer.size}`,
            { digest: layer.digest, at: pos },
          );
      });
      const actual = `sha256:${h.digest('hex')}`;
      if (actual !== layer.digest) {
        done[i] = 0;
        throw new OciError('E_OCI_DIGEST', `blob ${layer.digest} from ${source.where} does not match its digest`, {
          digest: layer.digest,
          actual,
        });
      }
    });
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await saveJournal().catch(() => {});
    throw e;
  }
  await fh.close();
  await journalWrite.catch(() => {});
  // The one strict reader checks what was assembled before anyone can use it; a package that
  // fails is not kept for resuming (the same plan would assemble the same bytes).
  try {
    const reader = await PackageReader.open(part);
    try {
      if (reader.id !== packageId)
        throw new OciError('E_OCI_MANIFEST', `assembled package has id ${reader.id}, expected ${packageId}`);
    } finally {
      await reader.close();
    }
  } catch (e) {
    await unlink(part).catch(() => {});
    await unlink(journalPath).catch(() => {});
    throw e;
  }
  await rename(part, cache.packagePath(name));
  await unlink(journalPath).catch(() => {});
  return counts;
}
