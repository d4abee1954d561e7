/**
 * Anti-rollback memory (spec/SIGNATURES.md §5): the highest manifest `sequence` accepted per
 * (signer key id, package name). A file store for the CLI and library, a memory store for tests and
 * hosts without a file system. A damaged state file is an error (E_POLICY_STATE), never silently
 * reset: resetting it would re-open exactly the downgrade it exists to stop.
 */
import { mkdir, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { canonicalize, type Json, parseStrictJson } from '../spec/canonical.js';
import { SigningError, XpkgError } from '../spec/errors.js';
import { readSmallFile, SmallFileError, writeFileAtomic } from './files.js';
import { type LockOptions, withFileLock } from './lock.js';

export const STATE_DIR_ENV = 'XPKG_STATE_DIR';
export const ROLLBACK_FILE = 'rollback.json';
const ROLLBACK_FORMAT = 'xpkg-rollback/1';
const STATE_MAX_BYTES = 16 * 1024 * 1024;

export interface RollbackRecord {
  keyid: string;
  name: string;
  sequence: number;
}

export interface RollbackStore {
  /** Where the state lives, for messages (a path, or a description). */
  readonly location: string;
  /** Highest sequence accepted so far for this signer and package name. */
  highest(keyid: string, name: string): number | undefined;
  /** Raises the recorded values (never lowers one). */
  record(updates: readonly RollbackRecord[]): Promise<void>;
}

type Table = Map<string, Map<string, number>>;

function raise(table: Table, u: RollbackRecord): boolean {
  let byName = table.get(u.keyid);
  if (!byName) table.set(u.keyid, (byName = new Map()));
  const cur = byName.get(u.name);
  if (cur !== undefined && cur >= u.sequence) return false;
  byName.set(u.name, u.sequence);
  return true;
}

export class MemoryRollbackStore implements RollbackStore {
  readonly location = '<memory>';
  private readonly table: Table = new Map();
  highest(keyid: string, name: string): number | undefined {
    return this.table.get(keyid)?.get(name);
  }
  async record(updates: readonly RollbackRecord[]): Promise<void> {
    for (const u of updates) raise(this.table, u);
  }
}

/** `$XPKG_STATE_DIR`, else `$XDG_STATE_HOME/xpkg`, else `~/.local/state/xpkg`. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env[STATE_DIR_ENV]) return env[STATE_DIR_ENV]!;
  if (env.XDG_STATE_HOME) return join(env.XDG_STATE_HOME, 'xpkg');
  return join(homedir(), '.local', 'state', 'xpkg');
}

function stateError(path: string, why: string, extra: Record<string, unknown> = {}): SigningError {
  return new SigningError('E_POLICY_STATE', `rollback state ${path}: ${why}`, { path, ...extra });
}

export function parseRollbackState(bytes: Uint8Array, path = '<inline>'): Table {
  let doc: Json;
  try {
    doc = parseStrictJson(bytes, { maxDepth: 4 });
  } catch (e) {
    throw stateError(path, e instanceof XpkgError ? e.message : 'not JSON');
  }
  const isObj = (v: unknown): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(doc) || doc.format !== ROLLBACK_FORMAT || !isObj(doc.highest) || Object.keys(doc).length !== 2) {
    throw stateError(path, `not an ${ROLLBACK_FORMAT} document`);
  }
  const table: Table = new Map();
  for (const [keyid, byName] of Object.entries(doc.highest)) {
    if (!/^[0-9a-f]{64}$/.test(keyid) || !isObj(byName))
      throw stateError(path, `bad entry for key ${JSON.stringify(keyid)}`);
    const m = new Map<string, number>();
    for (const [name, seq] of Object.entries(byName)) {
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0)
        throw stateError(path, `bad sequence for ${JSON.stringify(name)}`);
      m.set(name, seq);
    }
    table.set(keyid, m);
  }
  return table;
}

export function encodeRollbackState(table: Table): string {
  const highest: Record<string, Record<string, number>> = {};
  for (const [keyid, byName] of table) highest[keyid] = Object.fromEntries(byName);
  return `${canonicalize({ format: ROLLBACK_FORMAT, highest })}\n`;
}

/**
 * `mkdir -p` by hand: Node's recursive mkdir loops forever where mkdir answers ENOENT under a
 * parent that exists (procfs, sysfs), so each level is tried once and that answer is final.
 */
async function makeDirs(dir: string, mode: number): Promise<void> {
  try {
    await mkdir(dir, { mode });
    return;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EEXIST' && (await stat(dir)).isDirectory()) return;
    if (err.code !== 'ENOENT' || dirname(dir) === dir) throw e;
  }
  await makeDirs(dirname(dir), mode);
  await mkdir(dir, { mode }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
  });
}

async function readTable(path: string): Promise<Table> {
  let bytes: Buffer;
  try {
    bytes = await readSmallFile(path, STATE_MAX_BYTES);
  } catch (e) {
    if (e instanceof SmallFileError)
      throw stateError(path, e.reason === 'too-large' ? `larger than ${STATE_MAX_BYTES} bytes` : e.message);
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') return new Map();
    throw stateError(path, `cannot read: ${err.code ?? err.message}`, { errno: err.code });
  }
  return parseRollbackState(bytes, path);
}

export class FileRollbackStore implements RollbackStore {
  private constructor(
    readonly dir: string,
    readonly location: string,
    private table: Table,
    private readonly lock: LockOptions,
  ) {}

  /** Reads `<dir>/rollback.json` (absent means empty). `lock` bounds the wait for other writers. */
  static async open(dir: string = defaultStateDir(), lock: LockOptions = {}): Promise<FileRollbackStore> {
    const path = join(dir, ROLLBACK_FILE);
    return new FileRollbackStore(dir, path, await readTable(path), lock);
  }

  highest(keyid: string, name: string): number | undefined {
    return this.table.get(keyid)?.get(name);
  }

  /**
   * Under `<dir>/rollback.json.lock`: re-reads the file, merges (maximum wins) and replaces it
   * atomically, so concurrent verifiers never lose each other's records; a crash leaves the old or
   * the new file (and a lock that the next writer breaks).
   */
  async record(updates: readonly RollbackRecord[]): Promise<void> {
    if (updates.length === 0) return;
    const fail = (what: string) => (e: unknown) => {
      if (e instanceof XpkgError) throw e;
      const err = e as NodeJS.ErrnoException;
      throw stateError(this.location, `${what}: ${err.code === 'ELOCKED' ? err.message : (err.code ?? err.message)}`, {
        errno: err.code,
      });
    };
    await makeDirs(this.dir, 0o700).catch(fail(`cannot create ${this.dir}`));
    await withFileLock(
      `${this.location}.lock`,
      async () => {
        const fresh = await readTable(this.location);
        let changed = false;
        for (const u of updates) changed = raise(fresh, u) || changed;
        this.table = fresh;
        if (changed)
          await writeFileAtomic(this.location, encodeRollbackState(fresh), { mode: 0o600 }).catch(fail('cannot write'));
      },
      this.lock,
    ).catch(fail('cannot lock'));
  }
}
