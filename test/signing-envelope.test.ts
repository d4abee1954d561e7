/** The signature envelope and PAE: round trips and one malformed input per rule. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeEnvelope,
  type Envelope,
  encodeEnvelope,
  MAX_SIGNATURES,
  PAYLOAD_TYPE,
  pae,
  signedBytes,
} from '../signing/envelope.js';
import { canonicalize } from '../spec/canonical.js';
import { SigningError, type XpkgError } from '../spec/errors.js';
import { LIMITS } from '../spec/limits.js';
import { syncCodeOf } from './helpers/errors.js';

const ID = 'ab'.repeat(32);
const k = (c: string) => c.repeat(64);
const sig = (b: number) => new Uint8Array(64).fill(b);
const env = (n = 2): Envelope => ({
  payloadType: PAYLOAD_TYPE,
  packageId: ID,
  signatures: Array.from({ length: n }, (_, i) => ({ keyid: k('0123456789abcdef'[i % 16]), sig: sig(i) })),
});
const canonical = (o: unknown) => Buffer.from(canonicalize(o));

const codeOf = (f: () => unknown): string | null => syncCodeOf(f, SigningError);

describe('PAE', () => {
  it('is "DSSEv1 <len> <type> <len> <body>" with byte lengths', () => {
    expect(pae('a/b', Buffer.from('hello')).toString()).toBe('DSSEv1 3 a/b 5 hello');
    expect(pae('', new Uint8Array(0)).toString()).toBe('DSSEv1 0  0 ');
    // UTF-8 length, not string length.
    expect(pae('é', Buffer.from('€')).toString()).toBe('DSSEv1 2 é 3 €');
    expect(signedBytes(Buffer.from('{}')).toString()).toBe(`DSSEv1 ${PAYLOAD_TYPE.length} ${PAYLOAD_TYPE} 2 {}`);
  });
  it('is injective: moving bytes between type and body changes the encoding', () => {
    fc.assert(
      fc.property(fc.string(), fc.uint8Array(), fc.string(), fc.uint8Array(), (t1, b1, t2, b2) => {
        const same = t1 === t2 && Buffer.from(b1).equals(Buffer.from(b2));
        expect(pae(t1, b1).equals(pae(t2, b2))).toBe(same);
      }),
      { numRuns: 300 },
    );
  });
});

describe('envelope round trip', () => {
  it('encodes canonically, sorted by keyid, and decodes back', () => {
    const e = env(3);
    e.signatures.reverse();
    const bytes = encodeEnvelope(e);
    expect(bytes.toString()).toBe(canonicalize(JSON.parse(bytes.toString())));
    const back = decodeEnvelope(bytes);
    expect(back.signatures.map((s) => s.keyid)).toEqual([k('0'), k('1'), k('2')]);
    expect(Buffer.from(back.signatures[2].sig)).toEqual(Buffer.from(sig(2)));
    expect(back.packageId).toBe(ID);
  });
  it('refuses to encode what it would refuse to decode', () => {
    expect(codeOf(() => encodeEnvelope({ ...env(), payloadType: 'application/json' }))).toBe('E_SIG_PAYLOAD_TYPE');
    expect(codeOf(() => encodeEnvelope({ ...env(), signatures: [] }))).toBe('E_SIG_MALFORMED');
    expect(codeOf(() => encodeEnvelope({ ...env(), packageId: 'x' }))).toBe('E_SIG_MALFORMED');
    expect(
      codeOf(() =>
        encodeEnvelope({
          ...env(1),
          signatures: [
            { keyid: k('a'), sig: sig(1) },
            { keyid: k('a'), sig: sig(2) },
          ],
        }),
      ),
    ).toBe('E_SIG_MALFORMED');
    expect(codeOf(() => encodeEnvelope({ ...env(1), signatures: [{ keyid: k('a'), sig: new Uint8Array(63) }] }))).toBe(
      'E_SIG_MALFORMED',
    );
    expect(codeOf(() => encodeEnvelope(env(MAX_SIGNATURES + 1)))).toBe('E_SIG_TOO_LARGE');
  });
});

describe('malformed envelopes', () => {
  const good = JSON.parse(encodeEnvelope(env(2)).toString());
  const b64 = Buffer.from(sig(1)).toString('base64');
  const cases: [string, Uint8Array, string][] = [
    ['not JSON', Buffer.from('{"payloadType":'), 'E_SIG_MALFORMED'],
    ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0x7d]), 'E_SIG_MALFORMED'],
    [
      'duplicate key',
      Buffer.from(
        `{"packageId":"${ID}","payloadType":"${PAYLOAD_TYPE}","payloadType":"${PAYLOAD_TYPE}","signatures":[]}`,
      ),
      'E_SIG_MALFORMED',
    ],
    [
      'duplicate key inside a signature',
      Buffer.from(
        `{"packageId":"${ID}","payloadType":"${PAYLOAD_TYPE}","signatures":[{"keyid":"${k('a')}","keyid":"${k('b')}","sig":"${b64}"}]}`,
      ),
      'E_SIG_MALFORMED',
    ],
    ['an array', Buffer.from('[]'), 'E_SIG_MALFORMED'],
    ['other payload type', canonical({ ...good, payloadType: 'application/vnd.in-toto+json' }), 'E_SIG_PAYLOAD_TYPE'],
    [
      'payload type differs in case',
      canonical({ ...good, payloadType: PAYLOAD_TYPE.toUpperCase() }),
      'E_SIG_PAYLOAD_TYPE',
    ],
    ['no payload type', canonical({ packageId: ID, signatures: good.signatures }), 'E_SIG_PAYLOAD_TYPE'],
    ['not canonical (spaces)', Buffer.from(JSON.stringify(good, null, 1)), 'E_SIG_MALFORMED'],
    [
      'not canonical (key order)',
      Buffer.from(
        `{"signatures":${JSON.stringify(good.signatures)},"payloadType":"${PAYLOAD_TYPE}","packageId":"${ID}"}`,
      ),
      'E_SIG_MALFORMED',
    ],
    ['trailing newline', Buffer.concat([canonical(good), Buffer.from('\n')]), 'E_SIG_MALFORMED'],
    ['unknown field', canonical({ ...good, note: 'x' }), 'E_SIG_MALFORMED'],
    ['missing packageId', canonical({ payloadType: PAYLOAD_TYPE, signatures: good.signatures }), 'E_SIG_MALFORMED'],
    ['upper-case packageId', canonical({ ...good, packageId: ID.toUpperCase() }), 'E_SIG_MALFORMED'],
    ['signatures not an array', canonical({ ...good, signatures: {} }), 'E_SIG_MALFORMED'],
    ['no signatures', canonical({ ...good, signatures: [] }), 'E_SIG_MALFORMED'],
    ['signature not an object', canonical({ ...good, signatures: ['x'] }), 'E_SIG_MALFORMED'],
    [
      'extra field in a signature',
      canonical({ ...good, signatures: [{ keyid: k('a'), sig: b64, publicKey: 'x' }] }),
      'E_SIG_MALFORMED',
    ],
    ['short keyid', canonical({ ...good, signatures: [{ keyid: 'abcd', sig: b64 }] }), 'E_SIG_MALFORMED'],
    ['numeric sig', canonical({ ...good, signatures: [{ keyid: k('a'), sig: 5 }] }), 'E_SIG_MALFORMED'],
    [
      '63-byte sig',
      canonical({ ...good, signatures: [{ keyid: k('a'), sig: Buffer.alloc(63).toString('base64') }] }),
      'E_SIG_MALFORMED',
    ],
    [
      'unpadded base64',
      canonical({ ...good, signatures: [{ keyid: k('a'), sig: b64.replace(/=+$/, '') }] }),
      'E_SIG_MALFORMED',
    ],
    [
      'base64url alphabet',
      canonical({
        ...good,
        signatures: [{ keyid: k('a'), sig: Buffer.from(new Uint8Array(64).fill(0xfb)).toString('base64url') + '==' }],
      }),
      'E_SIG_MALFORMED',
    ],
    [
      'non-zero pad bits',
      canonical({ ...good, signatures: [{ keyid: k('a'), sig: `${b64.slice(0, 85)}B==` }] }),
      'E_SIG_MALFORMED',
    ],
    [
      'unsorted key ids',
      canonical({ ...good, signatures: [good.signatures[1], good.signatures[0]] }),
      'E_SIG_MALFORMED',
    ],
    [
      'repeated key id',
      canonical({ ...good, signatures: [good.signatures[0], good.signatures[0]] }),
      'E_SIG_MALFORMED',
    ],
    [
      'too many signatures',
      canonical({
        ...good,
        signatures: Array.from({ length: MAX_SIGNATURES + 1 }, (_, i) => ({
          keyid: i.toString(16).padStart(64, '0'),
          sig: b64,
        })),
      }),
      'E_SIG_TOO_LARGE',
    ],
    ['over the byte limit', Buffer.alloc(LIMITS.signaturesBytes + 1, 0x20), 'E_SIG_TOO_LARGE'],
    ['too deep', Buffer.from('['.repeat(10) + ']'.repeat(10)), 'E_SIG_MALFORMED'],
  ];
  for (const [name, bytes, code] of cases) {
    it(`${name} → ${code}`, () => expect(codeOf(() => decodeEnvelope(bytes))).toBe(code));
  }
  it('the valid base of these cases decodes', () => {
    expect(decodeEnvelope(canonical(good)).signatures).toHaveLength(2);
  });
  it('duplicate-key rejections say so in the detail', () => {
    try {
      decodeEnvelope(cases[2][1]);
      expect.unreachable();
    } catch (e) {
      expect((e as XpkgError).detail).toMatchObject({ reason: 'duplicate-key' });
    }
  });
});

describe('hostile bytes never escape as anything but a SigningError', () => {
  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        const code = codeOf(() => decodeEnvelope(b));
        expect(code).not.toBeNull();
      }),
      { numRuns: 500 },
    );
  });
  it('single-byte changes of a valid envelope are rejected or decode to a different, valid envelope', () => {
    const bytes = encodeEnvelope(env(2));
    for (let i = 0; i < bytes.length; i++) {
      for (const delta of [1, 0x20, 0x80]) {
        const b = Buffer.from(bytes);
        b[i] = (b[i] + delta) & 0xff;
        try {
          const d = decodeEnvelope(b);
          // Still well formed: then it must be re-encodable to exactly these bytes (one spelling).
          expect(encodeEnvelope(d).equals(b)).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(SigningError);
        }
      }
    }
  });
});
