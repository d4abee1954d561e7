/** Public API of signing and trust (spec/SIGNATURES.md). Verification never needs a secret key. */
export { verify, verifyReader, resolvePolicy, commitRollback, type VerifyPolicy, type VerifyOptions, type VerifyResult, type SignatureSummary, type LoadedPolicy } from './verify.js';
export {
  verifySignatures,
  type SignatureInput,
  type ResolvedPolicy,
  type RollbackView,
  type SignatureReport,
  type SignatureStatus,
  type Signer,
  type Downgrade,
} from './policy.js';
export { sign, keygen, loadSigningKey, addSignature, type SignOptions, type SignResult, type KeygenOptions, type KeygenResult, type AddSignatureResult } from './sign.js';
export { generateKeyPair, keyIdOf, formatPublicKey, parsePublicKey, PUBLIC_KEY_TAG, type KeyPair, type PublicKey } from './keys.js';
export { encodeSecretKey, decodeSecretKey, inspectSecretKey, DEFAULT_SCRYPT, SECRET_KEY_FORMAT, type ScryptParams, type SecretKeyInfo } from './secret-key.js';
export { pae, signedBytes, encodeEnvelope, decodeEnvelope, PAYLOAD_TYPE, MAX_SIGNATURES, type Envelope, type SignatureEntry } from './envelope.js';
export { verifyStrict, verifyEquation, publicKeyProblem, assertStrongPublicKey, hasCanonicalS, ed25519Backend, setEd25519Backend, type KeyProblem, type Ed25519Backend } from './ed25519.js';
export { loadTrustStore, buildTrustStore, parseRevocationList, EMPTY_TRUST_STORE, REVOCATION_FILE, type TrustStore, type TrustedKey, type TrustSources } from './trust.js';
export { FileRollbackStore, MemoryRollbackStore, defaultStateDir, STATE_DIR_ENV, ROLLBACK_FILE, type RollbackStore, type RollbackRecord } from './state.js';
export { obtainPassphrase, PASSPHRASE_ENV } from './passphrase.js';
export { renderVerifyResult } from './render.js';
