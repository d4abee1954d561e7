/**
 * Canonical JSON (RFC 8785, JCS) and a strict JSON parser.
 *
 * The manifest is stored and signed in canonical form, so "the bytes that get signed" and "the bytes
 * in the archive" are the same bytes. The parser rejects what JSON.parse silently accepts and an
 * attacker could use to make two readers see two different documents: duplicate keys above all.
 */
import { FormatError } from './errors.js';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** RFC 8785 serialisation: keys sorted by UTF-16 code units, ECMAScript number and string forms. */
export function canonicalize(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonical JSON cannot hold NaN or Infinity');
      return JSON.stringify(value);
    case 'string':
      if (hasLoneSurrogate(value)) throw new TypeError('canonical JSON cannot hold a lone surrogate');
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map(canonicalize).join(',')}]`;
      const obj = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, which is exactly what RFC 8785 asks for.
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalize(obj[k])}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
  }
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalize(value), 'utf8');
}

function hasLoneSurrogate(s: string): boolean {
  return /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

export interface ParseOptions {
  /** Maximum nesting depth; deep nesting is a cheap denial of service on recursive consumers. */
  maxDepth?: number;
}

/**
 * Parses UTF-8 JSON strictly: valid UTF-8 only, no BOM, no duplicate keys, no lone surrogates,
 * bounded depth. Objects are created with own data properties only (a `__proto__` key is data, never
 * a prototype). Throws FormatError E_MANIFEST_JSON or E_MANIFEST_DUPLICATE_KEY with the offset.
 */
export function parseStrictJson(input: Uint8Array | string, options: ParseOptions = {}): Json {
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(input);
    } catch {
      throw new FormatError('E_MANIFEST_JSON', 'JSON is not valid UTF-8');
    }
  }
  if (text.charCodeAt(0) === 0xfeff)
    throw new FormatError('E_MANIFEST_JSON', 'JSON starts with a byte-order mark', { offset: 0 });
  const maxDepth = options.maxDepth ?? 64;
  let i = 0;
  const fail = (what: string): never => {
    throw new FormatError('E_MANIFEST_JSON', `invalid JSON at offset ${i}: ${what}`, { offset: i });
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else return;
    }
  };
  const str = (): string => {
    // Caller saw the opening quote.
    i++;
    let out = '';
    let start = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        break;
      }
      if (c < 0x20) fail('control character in string');
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        i += 2;
        switch (e) {
          case '"':
            out += '"';
            break;
          case '\\':
            out += '\\';
            break;
          case '/':
            out += '/';
            break;
          case 'b':
            out += '\b';
            break;
          case 'f':
            out += '\f';
            break;
          case 'n':
            out += '\n';
            break;
          case 'r':
            out += '\r';
            break;
          case 't':
            out += '\t';
            break;
          case 'u': {
            const hex = text.slice(i, i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
            out += String.fromCharCode(parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            i -= 2;
            fail('bad escape');
        }
        start = i;
        continue;
      }
      i++;
    }
    if (hasLoneSurrogate(out)) fail('lone surrogate in string');
    return out;
  };
  const num = (): number => {
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m) fail('bad number');
    i += m![0].length;
    const n = Number(m![0]);
    if (!Number.isFinite(n)) fail('number out of range');
    return n;
  };
  const value = (depth: number): Json => {
    ws();
    const c = text[i];
    // `depth` containers enclose this value; opening another must not make it maxDepth + 1.
    if ((c === '{' || c === '[') && depth >= maxDepth) fail(`nesting deeper than ${maxDepth}`);
    if (c === '{') {
      i++;
      const obj: Record<string, Json> = {};
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const keyAt = i;
        const k = str();
        if (seen.has(k)) {
          throw new FormatError('E_MANIFEST_DUPLICATE_KEY', `duplicate key ${JSON.stringify(k)} at offset ${keyAt}`, {
            key: k,
            offset: keyAt,
          });
        }
        seen.add(k);
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        const v = value(depth + 1);
        Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr: Json[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return num();
    if (text.startsWith('true', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('false', i)) {
      i += 5;
      return false;
    }
    if (text.startsWith('null', i)) {
      i += 4;
      return null;
    }
    return fail(c === undefined ? 'unexpected end' : `unexpected ${JSON.stringify(c)}`);
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}
