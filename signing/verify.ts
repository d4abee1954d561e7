/**
 * `verify` of a package file, and the trust and rollback state it reads from files. The checks
 * themselves are signing/verify-reader.ts's, the one path every front end takes.
 */
import { PackageReader } from '../pack/reader.js';
import { UsageError } from '../spec/errors.js';
import { assertThreshold } from './policy.js';
import { defaultStateDir, FileRollbackStore, type RollbackStore } from './state.js';
import { loadTrustStore } from './trust.js';
import {
  type LoadedPolicy,
  policyFromStore,
  type VerifyOptions,
  type VerifyResult,
  verifyReader,
} from './verify-reader.js';

export {
  commitRollback,
  type LoadedPolicy,
  policyFromStore,
  type SignatureSummary,
  type VerifyOptions,
  type VerifyResult,
  verifyReader,
} from './verify-reader.js';

export interface VerifyPolicy {
  /** Trusted public keys: `.pub` file paths or their text. */
  trust?: readonly string[];
  /** Folder of `*.pub` files, with an optional `revoked.txt` of key ids. */
  trustDir?: string;
  /** Valid signatures by distinct trusted keys required; default 1. */
  threshold?: number;
  /** Accept a package without a trusted signature (integrity is still checked). */
  allowUnsigned?: boolean;
  /** Accept a lower `sequence` than already seen from a signer (reported in the result). */
  allowDowngrade?: boolean;
  /** Folder of the anti-rollback state; default `$XPKG_STATE_DIR`, `$XDG_STATE_HOME/xpkg`, `~/.local/state/xpkg`. */
  stateDir?: string;
  /** A rollback store to use instead of the state folder; null disables anti-rollback. */
  rollbackStore?: RollbackStore | null;
  /** Clock for `expires`; default now. */
  now?: Date;
}

/** Loads trust files and the rollback state named by a policy (no package involved). */
export async function resolvePolicy(policy: VerifyPolicy = {}): Promise<LoadedPolicy> {
  assertThreshold(policy.threshold ?? 1);
  if (policy.now !== undefined && Number.isNaN(policy.now.getTime()))
    throw new UsageError('E_USAGE', 'now is not a valid date');
  const store = await loadTrustStore({ trust: policy.trust, trustDir: policy.trustDir });
  // Rollback memory is keyed by signer, so without trusted keys there is nothing to read or write.
  let rollbackStore: RollbackStore | null = null;
  if (store.keys.size > 0) {
    if (policy.rollbackStore !== undefined) rollbackStore = policy.rollbackStore;
    else rollbackStore = await FileRollbackStore.open(policy.stateDir ?? defaultStateDir());
  }
  return policyFromStore(store, rollbackStore, policy);
}

/**
 * Verifies a package file: strict archive and manifest checks (on open), signatures and trust
 * policy, every payload digest, anti-rollback. Returns the typed result or throws an XpkgError
 * whose code the CLI maps to its exit status.
 */
export async function verify(
  pkgPath: string,
  policy: VerifyPolicy = {},
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const loaded = await resolvePolicy(policy);
  const reader = await PackageReader.open(pkgPath);
  try {
    return await verifyReader(reader, loaded, options);
  } finally {
    await reader.close();
  }
}
