/**
 * The signature and policy decision (spec/SIGNATURES.md §4–6) as one pure function over the
 * manifest bytes, the parsed manifest, the envelope bytes and a resolved policy. No I/O: the CLI,
 * the library, the runner and a browser build all call this same function.
 */

import { rfc3339Instant } from '../spec/date-time.js';
import { SigningError, UsageError } from '../spec/errors.js';
import type { Manifest } from '../spec/schema.js';
import { assertStrongPublicKey, verifyStrict } from './ed25519.js';
import { decodeEnvelope, signedBytes } from './envelope.js';
import { keyIdOf } from './keys.js';
import type { RollbackRecord } from './state.js';
import type { TrustStore } from './trust-store.js';

export interface SignatureInput {
  /** Canonical manifest bytes, exactly as stored. */
  manifestBytes: Uint8Array;
  manifest: Pick<Manifest, 'name' | 'version' | 'sequence' | 'expires'>;
  /** Package id (SHA-256 of `manifestBytes`), as computed by the reader. */
  id: string;
  /** `xpkg/signatures.json` bytes, or null when the package has none. */
  signaturesBytes: Uint8Array | null;
}

/** Read side of the anti-rollback memory. */
export interface RollbackView {
  readonly location: string;
  highest(keyid: string, name: string): number | undefined;
}

export interface ResolvedPolicy {
  store: TrustStore;
  /** Valid signatures by distinct trusted keys required (≥ 1). */
  threshold: number;
  /** Accept packages with no (trusted) signature, reporting status `unsigned` / `untrusted`. */
  allowUnsigned: boolean;
  /** Accept a sequence lower than one already seen, reporting it in `downgrades`. */
  allowDowngrade: boolean;
  now: Date;
  /** Null disables rollback checks (no state available). */
  rollback: RollbackView | null;
}

export type SignatureStatus = 'verified' | 'unsigned' | 'untrusted';

export interface Signer {
  keyid: string;
  /** Trust source of the key (file path or `<inline>`). */
  source: string;
}

export interface Downgrade {
  /** The trusted key whose record is the highest for this package name. */
  keyid: string;
  /** Highest sequence accepted before for this package name from a trusted key. */
  highest: number;
  sequence: number;
}

export interface SignatureReport {
  /** `verified`: threshold met by trusted keys. `unsigned`/`untrusted`: only with allowUnsigned. */
  status: SignatureStatus;
  packageId: string;
  name: string;
  version: string;
  sequence: number;
  expires: string | null;
  threshold: number;
  /** Trusted keys whose signatures verified. */
  signers: Signer[];
  /** Key ids in the envelope that no trusted key has (not checked). */
  untrusted: string[];
  /** Key ids in the envelope that are revoked (not counted). */
  revoked: string[];
  /** Downgrades accepted because allowDowngrade was set. Empty otherwise. */
  downgrades: Downgrade[];
  /** What the caller must record in the rollback store once the whole package checks out. */
  rollbackUpdates: RollbackRecord[];
}

export function assertThreshold(threshold: number): void {
  if (!Number.isSafeInteger(threshold) || threshold < 1)
    throw new UsageError('E_USAGE', `threshold must be an integer ≥ 1, not ${threshold}`);
}

/**
 * Decides whether the package's signatures satisfy the policy. Throws the first failure:
 * E_SIG_MISSING, E_SIG_TOO_LARGE / E_SIG_MALFORMED / E_SIG_PAYLOAD_TYPE (envelope),
 * E_SIG_WRONG_PACKAGE, E_SIG_WEAK_KEY / E_SIG_MALLEABLE / E_SIG_INVALID (a trusted key's signature),
 * E_TRUST_REVOKED / E_TRUST_UNTRUSTED / E_TRUST_THRESHOLD, E_POLICY_EXPIRED, E_POLICY_ROLLBACK.
 */
export function verifySignatures(input: SignatureInput, policy: ResolvedPolicy): SignatureReport {
  assertThreshold(policy.threshold);
  const { manifest } = input;
  const report: SignatureReport = {
    status: 'unsigned',
    packageId: input.id,
    name: manifest.name,
    version: manifest.version,
    sequence: manifest.sequence,
    expires: manifest.expires ?? null,
    threshold: policy.threshold,
    signers: [],
    untrusted: [],
    revoked: [],
    downgrades: [],
    rollbackUpdates: [],
  };
  const noTrust = policy.store.keys.size === 0;

  if (input.signaturesBytes === null) {
    if (!policy.allowUnsigned) {
      throw new SigningError(
        'E_SIG_MISSING',
        noTrust ? 'package is not signed (pass --allow-unsigned to accept unsigned packages)' : 'package is not signed',
        { packageId: input.id },
      );
    }
  } else {
    const envelope = decodeEnvelope(input.signaturesBytes);
    if (envelope.packageId !== input.id) {
      throw new SigningError(
        'E_SIG_WRONG_PACKAGE',
        `signatures were made for package ${envelope.packageId.slice(0, 16)}…, not this one (${input.id.slice(0, 16)}…): the manifest changed or the signatures were copied`,
        {
          expected: input.id,
          envelope: envelope.packageId,
        },
      );
    }
    const message = signedBytes(input.manifestBytes);
    for (const { keyid, sig } of envelope.signatures) {
      if (policy.store.revoked.has(keyid)) report.revoked.push(keyid);
      else {
        const key = policy.store.keys.get(keyid);
        if (!key) report.untrusted.push(keyid);
        else {
          // Distinct ids must mean distinct keys, or one signature could count twice toward the
          // threshold: a store not made by buildTrustStore is not trusted to have checked that.
          assertStrongPublicKey(key.publicKey, { keyid, source: key.source });
          if (keyIdOf(key.publicKey) !== keyid)
            throw new SigningError('E_SIG_KEYID_MISMATCH', `trusted key ${keyid.slice(0, 16)}… is another key's`, {
              keyid,
              source: key.source,
            });
          // A trusted key's signature that fails is tampering, not "one signature fewer": fail now.
          verifyStrict(message, sig, key.publicKey, { keyid, source: key.source });
          report.signers.push({ keyid, source: key.source });
        }
      }
    }
    if (report.signers.length >= policy.threshold) report.status = 'verified';
    else if (policy.allowUnsigned) report.status = 'untrusted';
    else {
      const detail = {
        threshold: policy.threshold,
        signers: report.signers.map((s) => s.keyid),
        untrusted: report.untrusted,
        revoked: report.revoked,
      };
      if (report.revoked.length > 0) {
        throw new SigningError(
          'E_TRUST_REVOKED',
          `signed by revoked key ${report.revoked[0].slice(0, 16)}…${report.signers.length ? `; ${report.signers.length} valid of ${policy.threshold} needed` : ''}`,
          detail,
        );
      }
      if (report.signers.length === 0) {
        throw new SigningError(
          'E_TRUST_UNTRUSTED',
          noTrust
            ? 'package is signed but no trusted keys were given (--trust, --trust-dir)'
            : `package is signed only by keys you do not trust (${report.untrusted.map((k) => `${k.slice(0, 16)}…`).join(', ')})`,
          detail,
        );
      }
      throw new SigningError(
        'E_TRUST_THRESHOLD',
        `${report.signers.length} valid signature(s) by trusted keys; ${policy.threshold} required`,
        detail,
      );
    }
  }

  if (manifest.expires !== undefined) {
    const at = rfc3339Instant(manifest.expires) ?? Number.NaN;
    if (!(at > policy.now.getTime())) {
      throw new SigningError('E_POLICY_EXPIRED', `package expired at ${manifest.expires}`, {
        expires: manifest.expires,
        now: policy.now.toISOString(),
      });
    }
  }

  if (report.status === 'verified' && policy.rollback) {
    // The highest sequence of this name accepted from ANY key still trusted, not only from this
    // package's signers: an old release signed by a second or rotated-out key must not replace a
    // newer one. A key revoked or no longer trusted stops counting (a stolen key cannot lock a name).
    let top: { keyid: string; highest: number } | undefined;
    for (const keyid of policy.store.keys.keys()) {
      const highest = policy.rollback.highest(keyid, manifest.name);
      if (highest !== undefined && (!top || highest > top.highest)) top = { keyid, highest };
    }
    if (top && manifest.sequence < top.highest) {
      if (!policy.allowDowngrade) {
        throw new SigningError(
          'E_POLICY_ROLLBACK',
          `${manifest.name} sequence ${manifest.sequence} is older than ${top.highest}, already accepted from key ${top.keyid.slice(0, 16)}… (pass --allow-downgrade to accept it)`,
          {
            name: manifest.name,
            keyid: top.keyid,
            sequence: manifest.sequence,
            highest: top.highest,
            state: policy.rollback.location,
          },
        );
      }
      report.downgrades.push({ keyid: top.keyid, highest: top.highest, sequence: manifest.sequence });
    } else {
      for (const { keyid } of report.signers) {
        const highest = policy.rollback.highest(keyid, manifest.name);
        if (highest === undefined || manifest.sequence > highest)
          report.rollbackUpdates.push({ keyid, name: manifest.name, sequence: manifest.sequence });
      }
    }
  }
  return report;
}
