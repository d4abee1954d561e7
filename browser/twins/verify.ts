/**
 * Browser twin of signing/verify.ts: the same checks (signing/verify-reader.ts), with trust given
 * as public key texts (pasted or dropped) instead of files, and anti-rollback state only when the
 * caller passes a store (a page has no ~/.local/state).
 */

import { parsePublicKey } from '../../signing/keys.js';
import { assertThreshold } from '../../signing/policy.js';
import { buildTrustStore, looksLikeKeyText } from '../../signing/trust-store.js';
import type { VerifyPolicy } from '../../signing/verify.js';
import { type LoadedPolicy, policyFromStore, type VerifyResult } from '../../signing/verify-reader.js';
import { UsageError } from '../../spec/errors.js';

export type { VerifyPolicy } from '../../signing/verify.js';
export {
  commitRollback,
  type LoadedPolicy,
  policyFromStore,
  type SignatureSummary,
  type VerifyOptions,
  type VerifyResult,
  verifyReader,
} from '../../signing/verify-reader.js';

export async function resolvePolicy(policy: VerifyPolicy = {}): Promise<LoadedPolicy> {
  assertThreshold(policy.threshold ?? 1);
  if (policy.trustDir !== undefined)
    throw new UsageError('E_USAGE', 'no trust folders in the browser: give the public keys as text');
  const keys = (policy.trust ?? []).map((text, i) => {
    // no paths here: text of several lines (a PEM pasted by mistake) is read as a key, E_KEY_FORMAT
    if (!looksLikeKeyText(text) && !text.includes('\n'))
      throw new UsageError('E_USAGE', `trusted key ${i + 1} is not public key text (no key files in the browser)`);
    return { ...parsePublicKey(text), source: `<key ${i + 1}>` };
  });
  return policyFromStore(buildTrustStore(keys), policy.rollbackStore ?? null, policy);
}

export async function verify(pkgPath: string): Promise<VerifyResult> {
  throw new UsageError('E_USAGE', `no file system in the browser: open ${JSON.stringify(pkgPath)} with xpkg/browser`);
}
