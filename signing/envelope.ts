/**
 * The signature envelope `xpkg/signatures.json` and the exact bytes a signature covers
 * (spec/SIGNATURES.md §2–3). Pure functions: no I/O, usable in a browser.
 */
import { canonicalize, type Json, parseStrictJson } from '../spec/canonical.js';
import { SigningError, XpkgError } from '../spec/errors.js';
import { LIMITS } from '../spec/limits.js';
import { SIGNATURE_BYTES } from './ed25519.js';

/** The only payload type format xpkg/1 signs: the canonical manifest bytes. */
export const PAYLOAD_TYPE = 'application/vnd.xpkg.manifest.v1+json';
/** Most signatures one envelope may carry; each costs a verification. */
export const MAX_SIGNATURES = 64;

const HEX64 = /^[0-9a-f]{64}$/;
const B64_SIG = /^[A-Za-z0-9+/]{86}==$/;

export interface SignatureEntry {
  /** Key id of the signer (spec/SIGNATURES.md §1). */
  keyid: string;
  /** 64-byte ed25519 signature over `pae(payloadType, manifestBytes)`. */
  sig: Uint8Array;
}

export interface Envelope {
  payloadType: string;
  /** Package id the signatures were made for. Unsigned: a diagnosis aid, never a source of trust. */
  packageId: string;
  /** Sorted by keyid, one per key. */
  signatures: SignatureEntry[];
}

/**
 * DSSE pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths
 * as ASCII decimal byte counts. The prefix keeps an xpkg signature from meaning anything to any
 * other protocol and the explicit payload type keeps it from being read as another kind of payload.
 */
export function pae(payloadType: string, body: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  const head = Buffer.from(`DSSEv1 ${type.length} `, 'ascii');
  const mid = Buffer.from(` ${body.length} `, 'ascii');
  return Buffer.concat([head, type, mid, body]);
}

/** The bytes an xpkg/1 signature covers for a given canonical manifest. */
export function signedBytes(manifestBytes: Uint8Array): Buffer {
  return pae(PAYLOAD_TYPE, manifestBytes);
}

function malformed(summary: string, detail: Record<string, unknown> = {}): SigningError {
  return new SigningError('E_SIG_MALFORMED', `signatures.json: ${summary}`, detail);
}

/** Serialises an envelope to its canonical bytes, sorting and checking the entries. */
export function encodeEnvelope(envelope: Envelope): Buffer {
  if (envelope.payloadType !== PAYLOAD_TYPE)
    throw new SigningError('E_SIG_PAYLOAD_TYPE', `cannot write payload type ${JSON.stringify(envelope.payloadType)}`);
  if (!HEX64.test(envelope.packageId)) throw malformed('package id is not 64 lower-case hex digits');
  if (envelope.signatures.length === 0) throw malformed('no signatures (an unsigned package has no signatures entry)');
  if (envelope.signatures.length > MAX_SIGNATURES) {
    throw new SigningError('E_SIG_TOO_LARGE', `more than ${MAX_SIGNATURES} signatures`, {
      count: envelope.signatures.length,
      limit: MAX_SIGNATURES,
    });
  }
  const sorted = [...envelope.signatures].sort((a, b) => (a.keyid < b.keyid ? -1 : a.keyid > b.keyid ? 1 : 0));
  sorted.forEach((s, i) => {
    if (!HEX64.test(s.keyid)) throw malformed(`signature ${i}: key id is not 64 lower-case hex digits`);
    if (s.sig.length !== SIGNATURE_BYTES) throw malformed(`signature ${i}: not ${SIGNATURE_BYTES} bytes`);
    if (i > 0 && sorted[i - 1].keyid === s.keyid) throw malformed(`two signatures by key ${s.keyid}`);
  });
  const bytes = Buffer.from(
    canonicalize({
      payloadType: envelope.payloadType,
      packageId: envelope.packageId,
      signatures: sorted.map((s) => ({ keyid: s.keyid, sig: Buffer.from(s.sig).toString('base64') })),
    }),
    'utf8',
  );
  if (bytes.length > LIMITS.signaturesBytes) {
    throw new SigningError(
      'E_SIG_TOO_LARGE',
      `signatures.json would be ${bytes.length} bytes; the limit is ${LIMITS.signaturesBytes}`,
      { size: bytes.length, limit: LIMITS.signaturesBytes },
    );
  }
  return bytes;
}

const isObject = (v: unknown): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);

function exactKeys(obj: Record<string, Json>, keys: string[], where: string): void {
  const have = Object.keys(obj).sort();
  const want = [...keys].sort();
  if (have.length !== want.length || have.some((k, i) => k !== want[i])) {
    throw malformed(`${where} must have exactly the fields ${want.join(', ')}`, { fields: have });
  }
}

/**
 * Parses stored envelope bytes strictly. Throws E_SIG_TOO_LARGE, E_SIG_MALFORMED (bad JSON,
 * duplicate keys, non-canonical bytes, wrong shape, bad base64, unsorted or repeated key ids) or
 * E_SIG_PAYLOAD_TYPE.
 */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  if (bytes.length > LIMITS.signaturesBytes) {
    throw new SigningError(
      'E_SIG_TOO_LARGE',
      `signatures.json is ${bytes.length} bytes; the limit is ${LIMITS.signaturesBytes}`,
      { size: bytes.length, limit: LIMITS.signaturesBytes },
    );
  }
  let value: Json;
  try {
    value = parseStrictJson(bytes, { maxDepth: 4 });
  } catch (e) {
    if (e instanceof XpkgError) {
      const reason = e.code === 'E_MANIFEST_DUPLICATE_KEY' ? 'duplicate-key' : 'json';
      throw new SigningError(
        'E_SIG_MALFORMED',
        `signatures.json: ${e.message}`,
        { reason, ...(e.detail as object) },
        { cause: e },
      );
    }
    throw e;
  }
  if (!isObject(value)) throw malformed('not a JSON object');
  // Payload type first: a different type is a different protocol, whatever else the document holds.
  if (value.payloadType !== PAYLOAD_TYPE) {
    throw new SigningError(
      'E_SIG_PAYLOAD_TYPE',
      `signatures are over payload type ${JSON.stringify(value.payloadType)}; this verifier accepts only ${PAYLOAD_TYPE}`,
      {
        payloadType: value.payloadType ?? null,
        expected: PAYLOAD_TYPE,
      },
    );
  }
  const canon = Buffer.from(canonicalize(value), 'utf8');
  if (!canon.equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
    throw malformed('bytes are not in canonical JSON form (RFC 8785)', { reason: 'not-canonical' });
  }
  exactKeys(value, ['payloadType', 'packageId', 'signatures'], 'the envelope');
  if (typeof value.packageId !== 'string' || !HEX64.test(value.packageId))
    throw malformed('packageId is not 64 lower-case hex digits');
  const list = value.signatures;
  if (!Array.isArray(list)) throw malformed('signatures is not an array');
  if (list.length === 0) throw malformed('no signatures');
  if (list.length > MAX_SIGNATURES) {
    throw new SigningError('E_SIG_TOO_LARGE', `${list.length} signatures; the limit is ${MAX_SIGNATURES}`, {
      count: list.length,
      limit: MAX_SIGNATURES,
    });
  }
  const signatures: SignatureEntry[] = list.map((item, i) => {
    if (!isObject(item)) throw malformed(`signature ${i} is not an object`);
    exactKeys(item, ['keyid', 'sig'], `signature ${i}`);
    if (typeof item.keyid !== 'string' || !HEX64.test(item.keyid))
      throw malformed(`signature ${i}: keyid is not 64 lower-case hex digits`, { index: i });
    if (typeof item.sig !== 'string' || !B64_SIG.test(item.sig))
      throw malformed(`signature ${i}: sig is not ${SIGNATURE_BYTES} bytes of padded base64`, { index: i });
    const sig = Buffer.from(item.sig, 'base64');
    // Re-encoding catches non-zero pad bits: one signature, one spelling.
    if (sig.length !== SIGNATURE_BYTES || sig.toString('base64') !== item.sig)
      throw malformed(`signature ${i}: sig is not canonical base64`, { index: i });
    if (i > 0) {
      const prev = (list[i - 1] as Record<string, Json>).keyid as string;
      if (!(prev < item.keyid))
        throw malformed(`signature ${i}: key ids are not sorted or repeat`, { index: i, keyid: item.keyid });
    }
    return { keyid: item.keyid, sig: new Uint8Array(sig) };
  });
  return { payloadType: PAYLOAD_TYPE, packageId: value.packageId, signatures };
}
