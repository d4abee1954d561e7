/**
 * Strict ed25519: RFC 8032 vectors, the S+L malleation tweetnacl accepts, small-order,
 * non-canonical and mixed-order keys, and a cross-check of the signature equation against
 * node:crypto (OpenSSL) on edge vectors and random inputs.
 */
import { createHash, createPublicKey, verify as nodeVerifyRaw } from 'node:crypto';
import fc from 'fast-check';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import {
  type Ed25519Backend,
  ed25519Backend,
  hasCanonicalS,
  keyPairFromSeed,
  publicKeyProblem,
  setEd25519Backend,
  verifyEquation,
  verifyStrict,
} from '../signing/ed25519.js';
import {
  add,
  BASE,
  bigIntToLe,
  D,
  decodePoint,
  encodePoint,
  hasSmallOrder,
  IDENTITY,
  isIdentity,
  L,
  leToBigInt,
  mod,
  P,
  type Point,
  powMod,
  recoverX,
  SQRT_M1,
  scalarMult,
} from '../signing/ed25519-math.js';
import { SigningError } from '../spec/errors.js';
import { syncCodeOf } from './helpers/errors.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function nodeVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') },
      format: 'jwk',
    });
    return nodeVerifyRaw(null, message, key, signature);
  } catch {
    return false;
  }
}

const codeOf = (f: () => unknown): string | null => syncCodeOf(f, SigningError);

// RFC 8032 §7.1, tests 1–3.
const RFC8032 = [
  {
    seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    pk: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    msg: '',
    sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    pk: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    msg: '72',
    sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    seed: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    pk: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    msg: 'af82',
    sig: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
];

/** RFC 8032 test 1 with S replaced by S + L: same R, same message, different bytes. */
const MALLEATED_TEST1 =
  'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901554c8c7872aa064e049dbb3013fbf29380d25bf5f0595bbe24655141438e7a101b';

/** A point of order exactly 8: [L]Q for a point Q on the curve lands in the torsion subgroup. */
function torsionGenerator(): Point {
  for (let y = 2n; ; y++) {
    const x = recoverX(y, 0);
    if (x === null) continue;
    const t = scalarMult({ X: x, Y: y, Z: 1n, T: mod(x * y) }, L);
    if (!isIdentity(scalarMult(t, 4n))) return t;
  }
}
const T8 = torsionGenerator();
const SMALL_ORDER = Array.from({ length: 8 }, (_, i) => encodePoint(scalarMult(T8, BigInt(i))));

/** Signs with an explicit scalar and public encoding, so tests can sign for odd keys. */
function signWithScalar(
  a: bigint,
  publicEnc: Uint8Array,
  message: Uint8Array,
  r: bigint,
  rEnc?: Uint8Array,
): Uint8Array {
  const R = rEnc ?? encodePoint(scalarMult(BASE, r));
  const k = mod(leToBigInt(createHash('sha512').update(R).update(publicEnc).update(message).digest()), L);
  const S = mod(r + k * a, L);
  return new Uint8Array(Buffer.concat([R, bigIntToLe(S)]));
}

function scalarOfSeed(seed: Uint8Array): bigint {
  const h = createHash('sha512').update(seed).digest();
  h[0] &= 248;
  h[31] &= 127;
  h[31] |= 64;
  return leToBigInt(h.subarray(0, 32));
}

describe('group arithmetic sanity', () => {
  it('the constants written as literals are what they are defined as', () => {
    const inv = (a: bigint) => powMod(a, P - 2n);
    expect(D).toBe(mod(-121665n * inv(121666n)));
    expect(SQRT_M1).toBe(powMod(2n, (P - 1n) / 4n));
    expect(mod(SQRT_M1 * SQRT_M1)).toBe(P - 1n);
    const y = mod(4n * inv(5n));
    expect(BASE).toEqual({ X: recoverX(y, 0), Y: y, Z: 1n, T: mod(recoverX(y, 0)! * y) });
  });
  it('encodes the base point as in RFC 8032 and round-trips encodings', () => {
    expect(toHex(encodePoint(BASE))).toBe('58' + '66'.repeat(31));
    const p = scalarMult(BASE, 123456789n);
    const d = decodePoint(encodePoint(p));
    expect('point' in d && toHex(encodePoint(d.point))).toBe(toHex(encodePoint(p)));
    expect(isIdentity(scalarMult(BASE, L))).toBe(true);
  });
  it('finds exactly 8 distinct small-order points, identity first', () => {
    expect(new Set(SMALL_ORDER.map(toHex)).size).toBe(8);
    expect(toHex(SMALL_ORDER[0])).toBe('01' + '00'.repeat(31));
    for (const e of SMALL_ORDER) {
      const d = decodePoint(e);
      expect('point' in d && hasSmallOrder(d.point)).toBe(true);
    }
  });
});

describe('RFC 8032 vectors', () => {
  for (const [i, v] of RFC8032.entries()) {
    it(`test ${i + 1}: key, signature and verification match`, () => {
      const kp = keyPairFromSeed(hex(v.seed));
      expect(toHex(kp.publicKey)).toBe(v.pk);
      expect(toHex(nacl.sign.detached(hex(v.msg), kp.secretKey))).toBe(v.sig);
      expect(publicKeyProblem(hex(v.pk))).toBeNull();
      expect(verifyEquation(hex(v.msg), hex(v.sig), hex(v.pk), 'tweetnacl')).toBe(true);
      expect(verifyEquation(hex(v.msg), hex(v.sig), hex(v.pk), 'node')).toBe(true);
      expect(nodeVerify(hex(v.pk), hex(v.msg), hex(v.sig))).toBe(true);
      expect(codeOf(() => verifyStrict(hex(v.msg), hex(v.sig), hex(v.pk)))).toBeNull();
      expect(codeOf(() => verifyStrict(hex(v.msg + '00'), hex(v.sig), hex(v.pk)))).toBe('E_SIG_INVALID');
    });
  }
});

describe('S ≥ L malleation', () => {
  const v = RFC8032[0];
  it('the frozen vector is test 1 with S + L, which tweetnacl 1.0.3 accepts and we reject', () => {
    const sig = hex(MALLEATED_TEST1);
    expect(toHex(sig.subarray(0, 32))).toBe(v.sig.slice(0, 64));
    expect(leToBigInt(sig.subarray(32))).toBe(leToBigInt(hex(v.sig).subarray(32)) + L);
    // The flaw being fixed: a second, different signature for the same message without the key.
    expect(nacl.sign.detached.verify(hex(v.msg), sig, hex(v.pk))).toBe(true);
    expect(hasCanonicalS(sig)).toBe(false);
    expect(verifyEquation(hex(v.msg), sig, hex(v.pk), 'tweetnacl')).toBe(false);
    expect(verifyEquation(hex(v.msg), sig, hex(v.pk), 'node')).toBe(false);
    expect(nodeVerify(hex(v.pk), hex(v.msg), sig)).toBe(false);
    expect(codeOf(() => verifyStrict(hex(v.msg), sig, hex(v.pk)))).toBe('E_SIG_MALLEABLE');
  });
  it('S + kL for every k that fits in 256 bits is rejected', () => {
    const base = hex(v.sig);
    const S = leToBigInt(base.subarray(32));
    for (let k = 1n; S + k * L < 1n << 256n; k++) {
      const sig = new Uint8Array(Buffer.concat([base.subarray(0, 32), bigIntToLe(S + k * L)]));
      expect(codeOf(() => verifyStrict(hex(v.msg), sig, hex(v.pk)))).toBe('E_SIG_MALLEABLE');
      expect(verifyEquation(hex(v.msg), sig, hex(v.pk), 'tweetnacl')).toBe(nodeVerify(hex(v.pk), hex(v.msg), sig));
    }
  });
  it('S = L - 1 is canonical and S = L is not', () => {
    const at = (s: bigint) => new Uint8Array(Buffer.concat([new Uint8Array(32), bigIntToLe(s)]));
    expect(hasCanonicalS(at(L - 1n))).toBe(true);
    expect(hasCanonicalS(at(L))).toBe(false);
  });
});

describe('weak public keys', () => {
  const forgery = new Uint8Array(64);
  forgery.set(SMALL_ORDER[0], 0); // R = identity, S = 0

  it('the identity key with R = identity, S = 0 "verifies" any message in tweetnacl and OpenSSL; we refuse the key', () => {
    for (const m of ['', 'evil', 'another package']) {
      const msg = new Uint8Array(Buffer.from(m));
      expect(nacl.sign.detached.verify(msg, forgery, SMALL_ORDER[0])).toBe(true);
      expect(nodeVerify(SMALL_ORDER[0], msg, forgery)).toBe(true);
      expect(codeOf(() => verifyStrict(msg, forgery, SMALL_ORDER[0]))).toBe('E_SIG_WEAK_KEY');
    }
  });
  it('all 8 small-order points are refused as keys', () => {
    for (const enc of SMALL_ORDER) expect(publicKeyProblem(enc)).toBe('small-order');
  });
  it('non-canonical encodings (y ≥ p, or x = 0 with the sign bit) are refused', () => {
    let n = 0;
    for (let y = 0n; y < 19n; y++) {
      for (const sign of [0, 1]) {
        if (recoverX(y, 0) === null) continue;
        const enc = bigIntToLe(y + P);
        enc[31] |= sign << 7;
        expect(publicKeyProblem(enc)).toBe('non-canonical');
        n++;
      }
    }
    for (const y of [1n, P - 1n]) {
      const enc = bigIntToLe(y);
      enc[31] |= 0x80;
      expect(publicKeyProblem(enc)).toBe('non-canonical');
      n++;
    }
    expect(n).toBeGreaterThan(20);
  });
  it('a point with a small-order component (mixed order) is refused', () => {
    const A = scalarMult(BASE, scalarOfSeed(new Uint8Array(32).fill(3)));
    expect(publicKeyProblem(encodePoint(A))).toBeNull();
    expect(publicKeyProblem(encodePoint(add(A, T8)))).toBe('torsion');
  });
  it('bytes that are not a curve point are refused', () => {
    const enc = bigIntToLe(2n); // y = 2 has no x
    expect(publicKeyProblem(enc)).toBe('not-on-curve');
    expect(publicKeyProblem(new Uint8Array(31))).toBe('length');
  });
});

describe('cross-check with node:crypto (OpenSSL) on edge vectors', () => {
  const seedA = new Uint8Array(32).fill(9);
  const a = scalarOfSeed(seedA);
  const A = scalarMult(BASE, a);
  const Aenc = encodePoint(A);
  const messages = Array.from({ length: 24 }, (_, i) => new Uint8Array(Buffer.from(`edge message ${i}`)));

  const vectors: { name: string; pk: Uint8Array; msg: Uint8Array; sig: Uint8Array }[] = [];
  for (const v of RFC8032) {
    vectors.push({ name: 'rfc8032', pk: hex(v.pk), msg: hex(v.msg), sig: hex(v.sig) });
    vectors.push({
      name: 'rfc8032 S+L',
      pk: hex(v.pk),
      msg: hex(v.msg),
      sig: (() => {
        const s = hex(v.sig);
        s.set(bigIntToLe(leToBigInt(s.subarray(32)) + L), 32);
        return s;
      })(),
    });
    vectors.push({
      name: 'rfc8032 S|2^255',
      pk: hex(v.pk),
      msg: hex(v.msg),
      sig: (() => {
        const s = hex(v.sig);
        s[63] |= 0x80;
        return s;
      })(),
    });
  }
  const forgery = new Uint8Array(64);
  forgery.set(SMALL_ORDER[0], 0);
  for (const m of messages.slice(0, 8)) {
    for (const enc of SMALL_ORDER) vectors.push({ name: 'small-order key, R=id S=0', pk: enc, msg: m, sig: forgery });
    // Non-canonical aliases of the identity and of the y = 0 point.
    for (const y of [1n + P, P]) vectors.push({ name: 'non-canonical key', pk: bigIntToLe(y), msg: m, sig: forgery });
    const signBitIdentity = bigIntToLe(1n);
    signBitIdentity[31] |= 0x80;
    vectors.push({ name: 'identity with sign bit', pk: signBitIdentity, msg: m, sig: forgery });
  }
  // Mixed-order key A + T8, signed with a's scalar: cofactorless verification holds iff 8 | k.
  const mixed = encodePoint(add(A, T8));
  for (const [i, m] of messages.entries())
    vectors.push({ name: 'mixed-order key', pk: mixed, msg: m, sig: signWithScalar(a, mixed, m, 1000n + BigInt(i)) });
  // Small-order R with a legitimate key: S = k·a, R = identity. Valid by the equation.
  for (const m of messages.slice(0, 4))
    vectors.push({ name: 'small-order R', pk: Aenc, msg: m, sig: signWithScalar(a, Aenc, m, 0n, SMALL_ORDER[0]) });
  // Non-canonical R (identity as y = p + 1): the recomputed R is encoded canonically, so never equal.
  for (const m of messages.slice(0, 4))
    vectors.push({
      name: 'non-canonical R',
      pk: Aenc,
      msg: m,
      sig: signWithScalar(a, Aenc, m, 0n, bigIntToLe(1n + P)),
    });
  // Ordinary signatures with single bit flips in R, S, message and key.
  const ordinary = signWithScalar(a, Aenc, messages[0], 77n);
  vectors.push({ name: 'ordinary', pk: Aenc, msg: messages[0], sig: ordinary });
  for (const bit of [0, 7, 255, 256, 300, 511]) {
    const s = Uint8Array.from(ordinary);
    s[bit >> 3] ^= 1 << (bit & 7);
    vectors.push({ name: `sig bit ${bit}`, pk: Aenc, msg: messages[0], sig: s });
  }
  const pk2 = Uint8Array.from(Aenc);
  pk2[0] ^= 1;
  vectors.push({ name: 'key bit 0', pk: pk2, msg: messages[0], sig: ordinary });

  it(`the tweetnacl and OpenSSL backends of verifyEquation agree with node:crypto on all ${vectors.length} vectors`, () => {
    for (const backend of ['tweetnacl', 'node'] as const) {
      const disagreements = vectors
        .filter((v) => verifyEquation(v.msg, v.sig, v.pk, backend) !== nodeVerify(v.pk, v.msg, v.sig))
        .map((v) => v.name);
      expect(disagreements, backend).toEqual([]);
    }
  });
  it('the vector set exercises both outcomes in each weak class', () => {
    const accepted = (name: string) =>
      vectors.filter((v) => v.name === name).map((v) => nodeVerify(v.pk, v.msg, v.sig));
    expect(accepted('mixed-order key')).toContain(true);
    expect(accepted('mixed-order key')).toContain(false);
    expect(accepted('small-order key, R=id S=0')).toContain(true);
    expect(accepted('small-order R').every(Boolean)).toBe(true);
    expect(accepted('non-canonical R').some(Boolean)).toBe(false);
    expect(accepted('rfc8032 S+L').some(Boolean)).toBe(false);
  });
  it('verifyStrict (either backend) accepts only what node accepts, and never a weak key', () => {
    const before = ed25519Backend();
    try {
      for (const backend of ['tweetnacl', 'node'] as Ed25519Backend[]) {
        setEd25519Backend(backend);
        for (const v of vectors) {
          const code = codeOf(() => verifyStrict(v.msg, v.sig, v.pk));
          if (code === null) expect(nodeVerify(v.pk, v.msg, v.sig)).toBe(true);
          else if (publicKeyProblem(v.pk) !== null) expect(code).toBe('E_SIG_WEAK_KEY');
          else expect(['E_SIG_MALLEABLE', 'E_SIG_INVALID']).toContain(code);
        }
      }
    } finally {
      setEd25519Backend(before);
    }
  });
  it('random keys, messages and single-bit corruptions: verifyEquation agrees with node:crypto', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ maxLength: 200 }),
        fc.option(fc.nat({ max: 64 * 8 + 32 * 8 + 199 * 8 })),
        (seed, msg, flip) => {
          const kp = keyPairFromSeed(seed);
          const sig = nacl.sign.detached(msg, kp.secretKey);
          const pk = Uint8Array.from(kp.publicKey);
          const m = Uint8Array.from(msg);
          if (flip !== null) {
            if (flip < 512) sig[flip >> 3] ^= 1 << (flip & 7);
            else if (flip < 768) pk[(flip - 512) >> 3] ^= 1 << (flip & 7);
            else if (m.length > 0) m[((flip - 768) >> 3) % m.length] ^= 1 << (flip & 7);
          }
          expect(verifyEquation(m, sig, pk, 'tweetnacl')).toBe(nodeVerify(pk, m, sig));
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('backend selection', () => {
  it('uses OpenSSL under Node unless told otherwise (it passed its known-answer self-test)', () => {
    expect(ed25519Backend()).toBe(process.env.XPKG_ED25519 === 'tweetnacl' ? 'tweetnacl' : 'node');
  });
});

describe('identity helpers', () => {
  it('IDENTITY is the neutral element', () => {
    expect(isIdentity(add(IDENTITY, IDENTITY))).toBe(true);
    expect(toHex(encodePoint(add(BASE, IDENTITY)))).toBe(toHex(encodePoint(BASE)));
  });
});
