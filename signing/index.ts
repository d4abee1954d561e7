/** Public API of signing and trust (spec/SIGNATURES.md). Verification never needs a secret key. */

export {
  assertStrongPublicKey,
  type Ed25519Backend,
  ed25519Backend,
  hasCanonicalS,
  type KeyProblem,
  publicKeyProblem,
  setEd25519Backend,
  verifyEquation,
  verifyStrict,
} from './ed25519.js';
export {
  decodeEnvelope,
  type Envelope,
  encodeEnvelope,
  MAX_SIGNATURES,
  PAYLOAD_TYPE,
  pae,
  type SignatureEntry,
  signedBytes,
} from './envelope.js';
export {
  formatPublicKey,
  generateKeyPair,
  type KeyPair,
  keyIdOf,
  PUBLIC_KEY_TAG,
  type PublicKey,
  parsePublicKey,
} from './keys.js';
export { obtainPassphrase, PASSPHRASE_ENV } from './passphrase.js';
export {
  type Downgrade,
  type ResolvedPolicy,
  type RollbackView,
  type SignatureInput,
  type SignatureReport,
  type SignatureStatus,
  type Signer,
  verifySignatures,
} from './policy.js';
export { renderVerifyResult } from './render.js';
export {
  DEFAULT_SCRYPT,
  decodeSecretKey,
  encodeSecretKey,
  inspectSecretKey,
  type ScryptParams,
  SECRET_KEY_FORMAT,
  type SecretKeyInfo,
} from './secret-key.js';
export {
  type AddSignatureResult,
  addSignature,
  type KeygenOptions,
  type KeygenResult,
  keygen,
  loadSigningKey,
  type SignOptions,
  type SignResult,
  sign,
} from './sign.js';
export {
  defaultStateDir,
  FileRollbackStore,
  MemoryRollbackStore,
  ROLLBACK_FILE,
  type RollbackRecord,
  type RollbackStore,
  STATE_DIR_ENV,
} from './state.js';
export {
  buildTrustStore,
  EMPTY_TRUST_STORE,
  loadTrustStore,
  parseRevocationList,
  REVOCATION_FILE,
  type TrustedKey,
  type TrustSources,
  type TrustStore,
} from './trust.js';
export {
  commitRollback,
  type LoadedPolicy,
  resolvePolicy,
  type SignatureSummary,
  type VerifyOptions,
  type VerifyPolicy,
  type VerifyResult,
  verify,
  verifyReader,
} from './verify.js';
