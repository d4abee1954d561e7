/**
 * The local content-addressed store shared by pull, run and export (spec/OCI.md §6):
 *
 *   blobs/sha256/<hex>         OCI manifests, configs (= package manifests), skeletons, signatures
 *   packages/<id>.xpkg         an assembled whole package, named by its package id
 *   packages/<id>.<sel>.xpkg   a partial package (<sel>: the first 16 hex of its partial record's SHA-256)
 *   refs/<sha256 of ref>.json  {reference, digest}: what a tag pointed to when last resolved
 *   tmp/                       assemblies in progress (resumable), under a lock per target
 *   ort/                       not this store's: the runner's optimised models (runner/backends/ort-cache.ts)
 *
 * Every file appears by rename of a complete, checked temp file; a lock per target package makes
 * concurrent pulls of the same package wait for one another instead of writing the same file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PackageReader } from '../pack/reader.js';
import { cacheRoot } from '../platform/cache-dir.js';
import { OciError, toXpkgError } from '../spec/errors.js';
import { hexOf, MEDIA, parseOciManifest, sha256 } from './artifact.js';
import { DIGEST } from './ref.js';

/** The cache folder pull, run and serve share (platform/cache-dir.ts: `XPKG_CACHE`, else the user's cache folder). */
export const defaultCacheDir = (env: NodeJS.ProcessEnv = process.env): string => cacheRoot(env);

export interface RefRecord {
  reference: string;
  digest: string;
}

export interface CachedPackage {
  file: string;
  id: string;
  /** Selection key of a partial package; null for a whole one. */
  selection: string | null;
  size: number;
}

const PACKAGE_NAME = /^([a-f0-9]{64})(?:\.([a-f0-9]{16}))?\.xpkg$/;

export class Cache {
  private constructor(readonly root: string) {}

  static async open(root = defaultCacheDir()): Promise<Cache> {
    try {
      for (const d of ['blobs/sha256', 'packages', 'refs', 'tmp']) await mkdir(join(root, d), { recursive: true });
    } catch (e) {
      throw new OciError('E_OCI_CACHE', `cannot use the cache folder ${root}: ${(e as Error).message}`, { root });
    }
    return new Cache(root);
  }

  blobPath(digest: string): string {
    return join(this.root, 'blobs', 'sha256', hexOf(digest));
  }

  packagePath(name: string): string {
    return join(this.root, 'packages', name);
  }

  tmpPath(name: string): string {
    return join(this.root, 'tmp', name);
  }

  static packageName(id: string, partial: Buffer | null): string {
    return partial ? `${id}.${createHash('sha256').update(partial).digest('hex').slice(0, 16)}.xpkg` : `${id}.xpkg`;
  }

  /** A small blob, re-checked against its digest on every read; a damaged copy is dropped (null). */
  async getBlob(digest: string): Promise<Buffer | null> {
    const bytes = await readFile(this.blobPath(digest)).catch(() => null);
    if (bytes && sha256(bytes) === digest) return bytes;
    if (bytes) await unlink(this.blobPath(digest)).catch(() => {});
    return null;
  }

  async putBlob(digest: string, bytes: Buffer): Promise<void> {
    if (sha256(bytes) !== digest) throw new OciError('E_OCI_DIGEST', `blob does not match ${digest}`, { digest });
    await this.writeAtomic(this.blobPath(digest), bytes);
  }

  private async writeAtomic(path: string, bytes: Buffer): Promise<void> {
    const tmp = this.tmpPath(`${randomBytes(8).toString('hex')}.tmp`);
    try {
      await writeFile(tmp, bytes, { mode: 0o644 });
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw new OciError('E_OCI_CACHE', `cannot write ${path}: ${(e as Error).message}`, { path });
    }
  }

  private refPath(reference: string): string {
    return join(this.root, 'refs', `${createHash('sha256').update(reference).digest('hex')}.json`);
  }

  async setRef(reference: string, digest: string): Promise<void> {
    await this.writeAtomic(this.refPath(reference), Buffer.from(JSON.stringify({ reference, digest })));
  }

  async getRef(reference: string): Promise<string | null> {
    const r = await readFile(this.refPath(reference), 'utf8').catch(() => null);
    try {
      const digest = r ? (JSON.parse(r) as RefRecord).digest : null;
      return typeof digest === 'string' && DIGEST.test(digest) ? digest : null;
    } catch {
      return null; // a damaged record is as good as none: the reference is resolved again
    }
  }

  async refs(): Promise<RefRecord[]> {
    return (await this.refFiles()).flatMap((x) => (x.record ? [x.record] : []));
  }

  /** Every record file, with its record, or null when it is damaged (gc removes those). */
  private async refFiles(): Promise<{ file: string; record: RefRecord | null }[]> {
    const out: { file: string; record: RefRecord | null }[] = [];
    for (const f of await readdir(join(this.root, 'refs'))) {
      const text = await readFile(join(this.root, 'refs', f), 'utf8').catch(() => null);
      let r: Partial<RefRecord> | null = null;
      try {
        r = text ? (JSON.parse(text) as Partial<RefRecord>) : null;
      } catch {
        r = null;
      }
      const ok = r && typeof r.reference === 'string' && typeof r.digest === 'string' && DIGEST.test(r.digest);
      out.push({ file: f, record: ok ? { reference: r!.reference!, digest: r!.digest! } : null });
    }
    return out.sort((a, b) => (a.record?.reference ?? '').localeCompare(b.record?.reference ?? ''));
  }

  async packages(): Promise<CachedPackage[]> {
    const out: CachedPackage[] = [];
    for (const f of (await readdir(join(this.root, 'packages'))).sort()) {
      const m = PACKAGE_NAME.exec(f);
      if (!m) continue;
      const st = await stat(this.packagePath(f)).catch(() => null);
      if (st?.isFile()) out.push({ file: f, id: m[1], selection: m[2] ?? null, size: st.size });
    }
    return out;
  }

  /**
   * Runs `fn` holding the lock of one target (waiting up to ~10 minutes for another process); a
   * lock whose holder died goes stale after 30 s and is taken over.
   */
  async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    let release: () => Promise<void>;
    // Loaded on first use: a warm run by reference never takes a lock.
    const { default: lockfile } = await import('proper-lockfile');
    try {
      release = await lockfile.lock(this.tmpPath(name), {
        realpath: false,
        stale: 30_000,
        update: 5_000,
        retries: { retries: 600, factor: 1.2, minTimeout: 50, maxTimeout: 1000 },
      });
    } catch (e) {
      throw new OciError('E_OCI_CACHE', `cannot lock ${name} in ${this.root}: ${(e as Error).message}`, { name });
    }
    try {
      return await fn();
    } finally {
      await release().catch(() => {});
    }
  }

  /**
   * A cached package holding the stored file with this SHA-256, for copying instead of
   * downloading (the copy is hashed again as it is made).
   */
  async findFile(sha: string): Promise<{ path: string; entry: string } | null> {
    for (const p of await this.packages()) {
      const m = await this.getBlob(`sha256:${p.id}`);
      if (!m) continue;
      const files = (JSON.parse(m.toString('utf8')) as { files?: { path: string; sha256: string }[] }).files ?? [];
      const f = files.find((x) => x.sha256 === sha);
      if (!f) continue;
      const reader = await PackageReader.open(this.packagePath(p.file)).catch(() => null);
      if (!reader) continue;
      const e = reader.entry(f.path);
      await reader.close();
      if (e && e.method === 0) return { path: this.packagePath(p.file), entry: f.path };
    }
    return null;
  }

  /** What the cache holds: references, packages (whole or partial) and bytes. */
  async list(): Promise<CacheListing> {
    const refs = await this.refs();
    const packages = await this.packages();
    const rows = [];
    for (const p of packages) {
      const m = await this.getBlob(`sha256:${p.id}`);
      const manifest = m ? (JSON.parse(m.toString('utf8')) as { name?: string; version?: string }) : {};
      const reader = await PackageReader.open(this.packagePath(p.file)).catch(() => null);
      const absent = reader ? [...reader.absent] : null;
      await reader?.close();
      rows.push({ ...p, name: manifest.name ?? null, version: manifest.version ?? null, absent });
    }
    const references = [];
    for (const r of refs) {
      const mb = await this.getBlob(r.digest);
      let id: string | null = null;
      if (mb) {
        try {
          id = hexOf(parseOciManifest(mb).config.digest);
        } catch {
          id = null;
        }
      }
      references.push({ ...r, packageId: id, cached: packages.filter((p) => p.id === id).map((p) => p.file) });
    }
    const blobs = await readdir(join(this.root, 'blobs', 'sha256'));
    let bytes = packages.reduce((n, p) => n + p.size, 0);
    for (const b of blobs) bytes += (await stat(join(this.root, 'blobs', 'sha256', b)).catch(() => ({ size: 0 }))).size;
    return { root: this.root, references, packages: rows, blobs: blobs.length, bytes };
  }

  /**
   * Removes what no reference reaches: packages whose id no referenced manifest names, blobs no
   * referenced manifest lists, references whose manifest is gone, and abandoned temp files.
   */
  async gc(options: { all?: boolean } = {}): Promise<{ removed: string[]; freedBytes: number }> {
    const keepBlobs = new Set<string>();
    const keepIds = new Set<string>();
    const removed: string[] = [];
    let freed = 0;
    const drop = async (path: string, label: string) => {
      const st = await stat(path).catch(() => null);
      await rm(path, { force: true, recursive: true });
      freed += st?.size ?? 0;
      removed.push(label);
    };
    for (const x of await this.refFiles())
      if (!x.record) await drop(join(this.root, 'refs', x.file), `ref file ${x.file}`);
    for (const r of await this.refs()) {
      const mb = options.all ? null : await this.getBlob(r.digest);
      if (!mb) {
        await drop(this.refPath(r.reference), `ref ${r.reference}`);
        continue;
      }
      keepBlobs.add(hexOf(r.digest));
      try {
        const oci = parseOciManifest(mb);
        keepIds.add(hexOf(oci.config.digest));
        for (const d of [oci.config, ...oci.layers]) if (d.mediaType !== MEDIA.file) keepBlobs.add(hexOf(d.digest));
      } catch {
        // not a package manifest: only the manifest blob itself is kept
      }
    }
    for (const p of await this.packages())
      if (!keepIds.has(p.id)) await drop(this.packagePath(p.file), `package ${p.file}`);
    for (const b of await readdir(join(this.root, 'blobs', 'sha256')))
      if (!keepBlobs.has(b)) await drop(join(this.root, 'blobs', 'sha256', b), `blob sha256:${b}`);
    // Temp files of assemblies nobody holds a lock on are abandoned; resumable ones too when --all.
    const { default: lockfile } = await import('proper-lockfile');
    for (const t of await readdir(join(this.root, 'tmp'))) {
      if (t.endsWith('.lock')) continue;
      const base = t.replace(/\.(part|part\.json|tmp)$/, '');
      const locked = await lockfile.check(this.tmpPath(base), { realpath: false, stale: 30_000 }).catch(() => false);
      if (!locked && (options.all || t.endsWith('.tmp'))) await drop(this.tmpPath(t), `tmp ${t}`);
    }
    return { removed, freedBytes: freed };
  }

  /** Re-checks every blob against its name and every package completely (structure, id, every digest). */
  async verify(): Promise<{
    blobs: number;
    packages: number;
    problems: { path: string; code: string; summary: string }[];
  }> {
    const problems: { path: string; code: string; summary: string }[] = [];
    const blobs = await readdir(join(this.root, 'blobs', 'sha256'));
    for (const b of blobs) {
      const bytes = await readFile(join(this.root, 'blobs', 'sha256', b)).catch(() => null);
      if (!bytes || sha256(bytes) !== `sha256:${b}`)
        problems.push({ path: `blobs/sha256/${b}`, code: 'E_OCI_DIGEST', summary: 'content does not match its name' });
    }
    const packages = await this.packages();
    for (const p of packages) {
      try {
        const reader = await PackageReader.open(this.packagePath(p.file));
        try {
          if (reader.id !== p.id)
            throw new OciError('E_OCI_CACHE', `package id is ${reader.id}, not the one in its name`);
          await reader.verifyIntegrity();
        } finally {
          await reader.close();
        }
      } catch (e) {
        const x = toXpkgError(e);
        problems.push({ path: `packages/${p.file}`, code: x.code, summary: x.message });
      }
    }
    return { blobs: blobs.length, packages: packages.length, problems };
  }
}

export interface CacheListing {
  root: string;
  references: (RefRecord & { packageId: string | null; cached: string[] })[];
  packages: (CachedPackage & { name: string | null; version: string | null; absent: string[] | null })[];
  blobs: number;
  bytes: number;
}
