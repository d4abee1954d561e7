/**
 * Error codes and exit statuses shared by every xpkg tool (spec/FORMAT.md §9).
 *
 * One error class per area, each with a closed union of codes. Tests assert `code`, never the
 * message. Every code maps to one exit status; statuses are grouped by area so a shell script can
 * tell "the file is damaged" from "the signature is wrong" from "you typed the command wrong".
 */

/** Exit statuses. Stable: scripts depend on them. */
export const EXIT = {
  ok: 0,
  internal: 1,
  usage: 2,
  io: 3,
  archive: 10,
  path: 11,
  manifest: 12,
  integrity: 13,
  pack: 14,
  unpack: 15,
  signature: 20,
  trust: 21,
  policy: 22,
  key: 23,
  runner: 30,
  host: 31,
  gpu: 32,
  browser: 33,
  sandbox: 40,
  native: 50,
  serve: 60,
  oci: 70,
  fabric: 80,
  /** stdout's reader went away (`| head`): 128 + SIGPIPE, as a shell reports a program killed by it. */
  closedPipe: 141,
} as const;
export type ExitStatus = (typeof EXIT)[keyof typeof EXIT];

const codes = {
  // usage / environment
  E_USAGE: EXIT.usage,
  E_IO: EXIT.io,
  E_NOT_FOUND: EXIT.io,
  E_INTERNAL: EXIT.internal,
  // archive profile (strict ZIP subset)
  E_ARCHIVE_TRUNCATED: EXIT.archive,
  E_ARCHIVE_NO_END: EXIT.archive,
  E_ARCHIVE_MULTIPLE_END: EXIT.archive,
  E_ARCHIVE_COMMENT: EXIT.archive,
  E_ARCHIVE_PREFIX: EXIT.archive,
  E_ARCHIVE_TRAILING: EXIT.archive,
  E_ARCHIVE_GAP: EXIT.archive,
  E_ARCHIVE_OVERLAP: EXIT.archive,
  E_ARCHIVE_HEADER_MISMATCH: EXIT.archive,
  E_ARCHIVE_UNSUPPORTED: EXIT.archive,
  E_ARCHIVE_ENCRYPTED: EXIT.archive,
  E_ARCHIVE_DATA_DESCRIPTOR: EXIT.archive,
  E_ARCHIVE_METHOD: EXIT.archive,
  E_ARCHIVE_SPECIAL_FILE: EXIT.archive,
  E_ARCHIVE_SIZE_MISMATCH: EXIT.archive,
  E_ARCHIVE_BOMB: EXIT.archive,
  E_ARCHIVE_LIMIT: EXIT.archive,
  E_ARCHIVE_ORDER: EXIT.archive,
  E_ARCHIVE_ALIGNMENT: EXIT.archive,
  E_ARCHIVE_TIMESTAMP: EXIT.archive,
  E_ARCHIVE_EXTRA_FIELD: EXIT.archive,
  E_ARCHIVE_CRC: EXIT.archive,
  // entry names
  E_PATH_UNSAFE: EXIT.path,
  E_PATH_DUPLICATE: EXIT.path,
  E_PATH_COLLISION: EXIT.path,
  // manifest
  E_MANIFEST_MISSING: EXIT.manifest,
  E_MANIFEST_JSON: EXIT.manifest,
  E_MANIFEST_DUPLICATE_KEY: EXIT.manifest,
  E_MANIFEST_NOT_CANONICAL: EXIT.manifest,
  E_MANIFEST_SCHEMA: EXIT.manifest,
  E_MANIFEST_REFERENCE: EXIT.manifest,
  E_MANIFEST_TOO_LARGE: EXIT.manifest,
  E_MANIFEST_VERSION: EXIT.manifest,
  // integrity of payload files
  E_FILE_EXTRA: EXIT.integrity,
  E_FILE_MISSING: EXIT.integrity,
  E_FILE_SIZE: EXIT.integrity,
  E_DIGEST_MISMATCH: EXIT.integrity,
  E_FILE_PARTIAL: EXIT.integrity,
  // pack (source folder problems)
  E_PACK_SOURCE_MISSING: EXIT.pack,
  E_PACK_SOURCE_LINK: EXIT.pack,
  E_PACK_SOURCE_OUTSIDE: EXIT.pack,
  E_PACK_SOURCE_TYPE: EXIT.pack,
  E_PACK_SOURCE_CHANGED: EXIT.pack,
  E_PACK_OUTPUT_EXISTS: EXIT.pack,
  E_PACK_OUTPUT_SOURCE: EXIT.pack,
  // unpack (destination problems)
  E_UNPACK_LINK: EXIT.unpack,
  E_UNPACK_EXISTS: EXIT.unpack,
  // signatures (signing/)
  E_SIG_MISSING: EXIT.signature,
  E_SIG_INVALID: EXIT.signature,
  E_SIG_MALFORMED: EXIT.signature,
  E_SIG_MALLEABLE: EXIT.signature,
  E_SIG_WEAK_KEY: EXIT.signature,
  E_SIG_PAYLOAD_TYPE: EXIT.signature,
  E_SIG_TOO_LARGE: EXIT.signature,
  E_SIG_KEYID_MISMATCH: EXIT.signature,
  E_SIG_WRONG_PACKAGE: EXIT.signature,
  // trust and policy
  E_TRUST_UNTRUSTED: EXIT.trust,
  E_TRUST_THRESHOLD: EXIT.trust,
  E_TRUST_REVOKED: EXIT.trust,
  E_TRUST_STORE: EXIT.trust,
  E_POLICY_EXPIRED: EXIT.policy,
  E_POLICY_ROLLBACK: EXIT.policy,
  E_POLICY_STATE: EXIT.policy,
  // keys
  E_KEY_FORMAT: EXIT.key,
  E_KEY_PASSPHRASE: EXIT.key,
  E_KEY_EXISTS: EXIT.key,
  // runner
  E_RUN_NO_VARIANT: EXIT.runner,
  E_RUN_VARIANT_UNKNOWN: EXIT.runner,
  E_RUN_VARIANT_UNSUPPORTED: EXIT.runner,
  E_RUN_VARIANT_ABSENT: EXIT.runner,
  E_RUN_BACKEND: EXIT.runner,
  E_RUN_LOAD: EXIT.runner,
  E_RUN_MODEL_EXTERNAL: EXIT.runner,
  E_RUN_INPUT: EXIT.runner,
  E_RUN_INPUT_FORMAT: EXIT.runner,
  E_RUN_PIPELINE: EXIT.runner,
  E_RUN_CACHE: EXIT.runner,
  E_RUN_BUDGET: EXIT.runner,
  E_HOST_PROFILE: EXIT.host,
  // GPU provider install (`xpkg gpu install`)
  E_GPU_PLATFORM: EXIT.gpu,
  E_GPU_RUNTIME_VERSION: EXIT.gpu,
  E_GPU_FETCH: EXIT.gpu,
  E_GPU_DIGEST: EXIT.gpu,
  E_GPU_PLACE: EXIT.gpu,
  E_GPU_BUILD: EXIT.gpu,
  E_BROWSER_TOO_LARGE: EXIT.browser,
  E_BROWSER_FETCH: EXIT.browser,
  E_BROWSER_UNSUPPORTED: EXIT.browser,
  E_BROWSER_WORKER: EXIT.browser,
  // sandbox
  E_SANDBOX_TIMEOUT: EXIT.sandbox,
  E_SANDBOX_MEMORY: EXIT.sandbox,
  E_SANDBOX_STACK: EXIT.sandbox,
  E_SANDBOX_SCRIPT: EXIT.sandbox,
  E_SANDBOX_IMPORT: EXIT.sandbox,
  E_SANDBOX_HANDLE: EXIT.sandbox,
  E_SANDBOX_OUTPUT: EXIT.sandbox,
  E_SANDBOX_KILLED: EXIT.sandbox,
  // native kernels
  E_NATIVE_ARGUMENT: EXIT.native,
  E_NATIVE_UNAVAILABLE: EXIT.native,
  E_NATIVE_KERNEL: EXIT.native,
  // inference daemon (`xpkg serve`); the HTTP status each maps to is in serve/errors.ts
  E_SERVE_CONFIG: EXIT.serve,
  E_SERVE_LISTEN: EXIT.serve,
  E_SERVE_REPO: EXIT.serve,
  E_SERVE_NOT_FOUND: EXIT.serve,
  E_SERVE_MODEL_UNKNOWN: EXIT.serve,
  E_SERVE_VERSION_UNKNOWN: EXIT.serve,
  E_SERVE_UNAVAILABLE: EXIT.serve,
  E_SERVE_REQUEST: EXIT.serve,
  E_SERVE_INPUT: EXIT.serve,
  E_SERVE_BODY_TOO_LARGE: EXIT.serve,
  E_SERVE_MEDIA_TYPE: EXIT.serve,
  E_SERVE_QUEUE_FULL: EXIT.serve,
  E_SERVE_TIMEOUT: EXIT.serve,
  E_SERVE_WORKER_CRASHED: EXIT.serve,
  E_SERVE_DRAINED: EXIT.serve,
  E_SERVE_DETACHED: EXIT.serve,
  E_SERVE_MEMORY: EXIT.serve,
  E_SERVE_ROLLBACK: EXIT.serve,
  E_SERVE_UNSIGNED: EXIT.serve,
  E_SERVE_UNAUTHORIZED: EXIT.serve,
  E_SERVE_METHOD: EXIT.serve,
  E_SERVE_SLOW_CLIENT: EXIT.serve,
  E_SERVE_HEADERS_TOO_LARGE: EXIT.serve,
  // OCI distribution (push, pull, export/import, cache, run by reference)
  E_OCI_REFERENCE: EXIT.oci,
  E_OCI_NETWORK: EXIT.oci,
  E_OCI_AUTH: EXIT.oci,
  E_OCI_NOT_FOUND: EXIT.oci,
  E_OCI_REGISTRY: EXIT.oci,
  E_OCI_DIGEST: EXIT.oci,
  E_OCI_MANIFEST: EXIT.oci,
  E_OCI_NOT_PACKAGE: EXIT.oci,
  E_OCI_PARTIAL: EXIT.oci,
  E_OCI_LAYOUT: EXIT.oci,
  E_OCI_CACHE: EXIT.oci,
  // split inference across machines (fabric/): cutting models, offloading to peers, discovery
  E_FABRIC_CONFIG: EXIT.fabric,
  E_FABRIC_SPLIT: EXIT.fabric,
  E_FABRIC_NO_PEER: EXIT.fabric,
  E_FABRIC_PEER: EXIT.fabric,
  E_FABRIC_AUTH: EXIT.fabric,
  E_FABRIC_PACKAGE_UNKNOWN: EXIT.fabric,
  E_FABRIC_DEADLINE: EXIT.fabric,
  E_FABRIC_DISCOVERY: EXIT.fabric,
  E_FABRIC_MESSAGE: EXIT.fabric,
} as const satisfies Record<string, ExitStatus>;

export type ErrorCode = keyof typeof codes;
export const ERROR_CODES: readonly ErrorCode[] = Object.keys(codes) as ErrorCode[];

export function exitStatusOf(code: ErrorCode): ExitStatus {
  return codes[code];
}

export interface ErrorJson {
  code: ErrorCode;
  summary: string;
  detail?: unknown;
}

/**
 * Base of every error xpkg throws on purpose. `summary` is one human sentence; `detail` is
 * machine-readable context (offsets, paths, expected/actual) that `--json` prints verbatim.
 */
export class XpkgError extends Error {
  readonly code: ErrorCode;
  readonly detail: unknown;
  constructor(code: ErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(summary, options);
    this.name = new.target.name;
    this.code = code;
    this.detail = detail;
  }
  get exitStatus(): ExitStatus {
    return exitStatusOf(this.code);
  }
  toJSON(): ErrorJson {
    const j: ErrorJson = { code: this.code, summary: this.message };
    if (this.detail !== undefined) j.detail = this.detail;
    return j;
  }
}

type Prefixed<P extends string> = Extract<ErrorCode, `${P}${string}`>;

/** Malformed or hostile archive bytes, unsafe names, bad manifests, payload integrity. */
export type FormatErrorCode =
  | Prefixed<'E_ARCHIVE_'>
  | Prefixed<'E_PATH_'>
  | Prefixed<'E_MANIFEST_'>
  | Prefixed<'E_FILE_'>
  | 'E_DIGEST_MISMATCH';
export class FormatError extends XpkgError {
  declare readonly code: FormatErrorCode;
  constructor(code: FormatErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(code, summary, detail, options);
  }
}

export type PackErrorCode = Prefixed<'E_PACK_'> | Prefixed<'E_UNPACK_'>;
export class PackError extends XpkgError {
  declare readonly code: PackErrorCode;
  constructor(code: PackErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(code, summary, detail, options);
  }
}

export type SigningErrorCode = Prefixed<'E_SIG_'> | Prefixed<'E_TRUST_'> | Prefixed<'E_POLICY_'> | Prefixed<'E_KEY_'>;
export class SigningError extends XpkgError {
  declare readonly code: SigningErrorCode;
  constructor(code: SigningErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(code, summary, detail, options);
  }
}

export type RunnerErrorCode = Prefixed<'E_RUN_'> | Prefixed<'E_HOST_'> | Prefixed<'E_GPU_'>;
export class RunnerError extends XpkgError {
  declare readonly code: RunnerErrorCode;
  constructor(code: RunnerErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(code, summary, detail, options);
  }
}

/** The browser entry (xpkg/browser): what a page cannot hold, fetch or do. */
export type BrowserErrorCode = Prefixed<'E_BROWSER_'>;
export class BrowserError extends XpkgError {
  declare readonly code: BrowserErrorCode;
  constructor(code: BrowserErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(code, summary, detail, options);
  }
}

export type SandboxErrorCode = Prefixed<'E_SANDBOX_'>;
export class SandboxError extends XpkgError {
  declare readonly code: SandboxErrorCode;
  constructor(code: SandboxErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(code, summary, detail, options);
  }
}

export type NativeErrorCode = Prefixed<'E_NATIVE_'>;
export class NativeError extends XpkgError {
  declare readonly code: NativeErrorCode;
  constructor(code: NativeErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(code, summary, detail, options);
  }
}

export type ServeErrorCode = Prefixed<'E_SERVE_'>;
export class ServeError extends XpkgError {
  declare readonly code: ServeErrorCode;
  constructor(code: ServeErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(code, summary, detail, options);
  }
}

export type OciErrorCode = Prefixed<'E_OCI_'>;
export class OciError extends XpkgError {
  declare readonly code: OciErrorCode;
  constructor(code: OciErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(code, summary, detail, options);
  }
}

/** Split inference across machines: model cuts, offload to peers, peer authentication, discovery. */
export type FabricErrorCode = Prefixed<'E_FABRIC_'>;
export class FabricError extends XpkgError {
  declare readonly code: FabricErrorCode;
  constructor(code: FabricErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(code, summary, detail, options);
  }
}

export type UsageErrorCode = 'E_USAGE' | 'E_IO' | 'E_NOT_FOUND' | 'E_INTERNAL';
export class UsageError extends XpkgError {
  declare readonly code: UsageErrorCode;
  constructor(code: UsageErrorCode, summary: string, detail?: unknown, options?: { cause?: unknown }) {
    super(code, summary, detail, options);
  }
}

/** Turns any thrown value into an XpkgError, mapping common Node I/O errors to stable codes. */
export function toXpkgError(e: unknown): XpkgError {
  if (e instanceof XpkgError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err === 'object' && typeof err.code === 'string') {
    if (err.code === 'ENOENT')
      return new UsageError('E_NOT_FOUND', err.message, { path: err.path, syscall: err.syscall });
    if (/^E[A-Z]+$/.test(err.code))
      return new UsageError('E_IO', err.message, { errno: err.code, path: err.path, syscall: err.syscall });
  }
  const message = err instanceof Error ? err.message : String(e);
  return new UsageError(
    'E_INTERNAL',
    `internal error: ${message}`,
    err instanceof Error ? { stack: err.stack } : undefined,
  );
}
