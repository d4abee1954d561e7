/**
 * The one verification of an open package, shared by the CLI, the library, the runner and the
 * browser build: signatures and policy are decided on the manifest bytes the reader holds, then
 * every payload is hashed through the same source, so what was checked is what gets read. Where
 * the trust keys and the rollback state come from (files under Node, the page in a browser) is the
 * caller's: signing/verify.ts loads them from files.
 */
import type { IntegrityReport, PackageReaderLike } from '../pack/types.js';
import { UsageError } from '../spec/errors.js';
import {
  assertThreshold,
  type Downgrade,
  type ResolvedPolicy,
  type SignatureStatus,
  type Signer,
  verifySignatures,
} from './policy.js';
import type { RollbackRecord, RollbackStore } from './state.js';
import type { TrustStore } from './trust-store.js';

export interface VerifyOptions {
  onProgress?: (done: number, total: number) => void;
  /**
   * 'full' (default) hashes every payload now. 'on-read' skips that pass: the caller promises to
   * read payloads only through `readVerified`, which checks the digest of exactly the bytes it
   * returns (the runner does this, so a 5 GiB GPU variant is not hashed to run the CPU one).
   * Nothing is recorded in the rollback state then: the records are left in `signatures.pending`
   * for `commitRollback` once every byte the caller uses has verified (a damaged copy of a newer
   * release must not lock out the intact older one).
   */
  integrity?: 'full' | 'on-read';
}

export interface SignatureSummary {
  status: SignatureStatus;
  threshold: number;
  signers: Signer[];
  untrusted: string[];
  revoked: string[];
  /** Downgrades accepted because of allowDowngrade; empty otherwise. */
  downgrades: Downgrade[];
  expires: string | null;
  /** Where the anti-rollback state lives, or null when not used for this package. */
  state: string | null;
  /** Rollback records raised by this verification. */
  recorded: number;
  /** With integrity 'on-read': the records still to raise with `commitRollback`. */
  pending?: RollbackRecord[];
}

export interface VerifyResult {
  ok: true;
  path: string;
  packageId: string;
  name: string;
  version: string;
  sequence: number;
  integrity: IntegrityReport;
  signatures: SignatureSummary;
}

/** A policy with its trust store loaded and its rollback store opened. */
export interface LoadedPolicy extends ResolvedPolicy {
  rollback: RollbackStore | null;
}

/** A policy over an already loaded trust store (and rollback store, or null for none). */
export function policyFromStore(
  store: TrustStore,
  rollback: RollbackStore | null,
  policy: { threshold?: number; allowUnsigned?: boolean; allowDowngrade?: boolean; now?: Date } = {},
): LoadedPolicy {
  const threshold = policy.threshold ?? 1;
  assertThreshold(threshold);
  if (policy.now !== undefined && Number.isNaN(policy.now.getTime()))
    throw new UsageError('E_USAGE', 'now is not a valid date');
  return {
    store,
    threshold,
    allowUnsigned: policy.allowUnsigned ?? false,
    allowDowngrade: policy.allowDowngrade ?? false,
    now: policy.now ?? new Date(),
    // Rollback memory is keyed by signer, so without trusted keys there is nothing to read or write.
    rollback: store.keys.size > 0 ? rollback : null,
  };
}

/**
 * Verifies an already open package: signatures and policy first (cheap, and they authenticate the
 * manifest that the digests come from), then the integrity of every payload, then the rollback
 * state is raised. Throws the first failure with its code.
 */
export async function verifyReader(
  reader: PackageReaderLike,
  policy: LoadedPolicy,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const report = verifySignatures(
    {
      manifestBytes: reader.manifestBytes,
      manifest: reader.manifest,
      id: reader.id,
      signaturesBytes: reader.signaturesBytes,
    },
    policy,
  );
  const integrity =
    options.integrity === 'on-read'
      ? { id: reader.id, files: 0, bytes: 0, ms: 0, deferred: true as const }
      : await reader.verifyIntegrity({ onProgress: options.onProgress });
  // Only a package that checked out completely may raise the high-water mark.
  const deferred = options.integrity === 'on-read';
  if (report.rollbackUpdates.length && !deferred) await policy.rollback!.record(report.rollbackUpdates);
  return {
    ok: true,
    path: reader.path,
    packageId: reader.id,
    name: report.name,
    version: report.version,
    sequence: report.sequence,
    integrity,
    signatures: {
      status: report.status,
      threshold: report.threshold,
      signers: report.signers,
      untrusted: report.untrusted,
      revoked: report.revoked,
      downgrades: report.downgrades,
      expires: report.expires,
      state: report.status === 'verified' && policy.rollback ? policy.rollback.location : null,
      recorded: deferred ? 0 : report.rollbackUpdates.length,
      ...(deferred ? { pending: report.rollbackUpdates } : {}),
    },
  };
}

/**
 * Raises the rollback records an 'on-read' verification left pending. Call it only once every
 * byte in use was read through `readVerified` (the runner: after a successful run).
 */
export async function commitRollback(policy: LoadedPolicy, result: VerifyResult): Promise<void> {
  const pending = result.signatures.pending;
  if (!pending?.length) return;
  result.signatures.pending = [];
  try {
    await policy.rollback!.record(pending);
  } catch (e) {
    result.signatures.pending = pending; // the next successful run tries again
    throw e;
  }
  result.signatures.recorded += pending.length;
}
