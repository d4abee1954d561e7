/**
 * A small semver range matcher for `requires.runtimeVersion` (no dependency for one function).
 * Supports what manifests write: comparators (`>=1.16.0 <2`), `||`, caret `^1.2`, tilde `~1.2.3`,
 * x-ranges (`1.x`, `1.2.*`, `*`), hyphen ranges (`1.2 - 1.4`) and partial versions. Runtime
 * versions from libraries are often partial or four-part (`10.3`, `2024.4.0.1`): the first three
 * numbers are used, missing ones read as 0. Pre-releases compare lower than their release and
 * otherwise lexically; build metadata is ignored.
 */

export interface Version {
  major: number;
  minor: number;
  patch: number;
  pre: string[];
}

/** Parses a version leniently (`v1.2`, `10.3.0.26`, `1.30.0-dev`); null if it has no leading number. */
export function parseVersion(text: string): Version | null {
  const m = /^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.\d+)*(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?\s*$/.exec(text);
  if (!m) return null;
  return { major: Number(m[1]), minor: Number(m[2] ?? 0), patch: Number(m[3] ?? 0), pre: m[4] ? m[4].split('.') : [] };
}

export function compareVersions(a: Version, b: Version): number {
  for (const k of ['major', 'minor', 'patch'] as const) if (a[k] !== b[k]) return a[k] < b[k] ? -1 : 1;
  if (!a.pre.length || !b.pre.length) return a.pre.length === b.pre.length ? 0 : a.pre.length ? -1 : 1;
  for (let i = 0; i < Math.max(a.pre.length, b.pre.length); i++) {
    const x = a.pre[i];
    const y = b.pre[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x === y) continue;
    const nx = /^\d+$/.test(x);
    const ny = /^\d+$/.test(y);
    if (nx && ny) return Number(x) < Number(y) ? -1 : 1;
    if (nx !== ny) return nx ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

type Op = '<' | '<=' | '>' | '>=' | '=';
interface Comparator {
  op: Op;
  v: Version;
}

/** A partial version as written in a range: undefined parts are wildcards. */
interface Partial {
  major?: number;
  minor?: number;
  patch?: number;
  pre: string[];
}

function parsePartial(text: string): Partial | null {
  const m = /^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/.exec(text);
  if (!m) return null;
  const num = (s: string | undefined) => (s === undefined || /^[xX*]$/.test(s) ? undefined : Number(s));
  const p: Partial = { major: num(m[1]), minor: num(m[2]), patch: num(m[3]), pre: m[4] ? m[4].split('.') : [] };
  // "1.x.3" is not a range anyone means: a wildcard makes everything after it a wildcard
  if (p.major === undefined) p.minor = p.patch = undefined;
  if (p.minor === undefined) p.patch = undefined;
  return p;
}

const ver = (major: number, minor = 0, patch = 0, pre: string[] = []): Version => ({ major, minor, patch, pre });

/** The comparators that `op partial` means. */
function expand(op: string, p: Partial): Comparator[] {
  const { major, minor, patch } = p;
  if (major === undefined) return op === '<' || op === '>' ? [{ op: '<', v: ver(0) }] : [];
  const lo = ver(major, minor ?? 0, patch ?? 0, p.pre);
  // first version above the wildcard part: 1.2.x → 1.3.0, 1.x → 2.0.0
  const next = minor === undefined ? ver(major + 1) : patch === undefined ? ver(major, minor + 1) : null;
  switch (op) {
    case '^': {
      const hi =
        major > 0 || minor === undefined
          ? ver(major + 1)
          : minor > 0 || patch === undefined
            ? ver(0, minor + 1)
            : ver(0, 0, (patch ?? 0) + 1);
      return [
        { op: '>=', v: lo },
        { op: '<', v: hi },
      ];
    }
    case '~':
      return [
        { op: '>=', v: lo },
        { op: '<', v: minor === undefined ? ver(major + 1) : ver(major, minor + 1) },
      ];
    case '':
    case '=':
      return next
        ? [
            { op: '>=', v: lo },
            { op: '<', v: next },
          ]
        : [{ op: '=', v: lo }];
    case '>':
      return [{ op: next ? '>=' : '>', v: next ?? lo }];
    case '<=':
      return [{ op: next ? '<' : '<=', v: next ?? lo }];
    case '>=':
    case '<':
      return [{ op, v: lo }];
    default:
      return [];
  }
}

export class SemverRangeError extends Error {}

/** Parses a range into OR-ed sets of AND-ed comparators; throws SemverRangeError when malformed. */
export function parseRange(range: string): Comparator[][] {
  return range.split('||').map((alt) => {
    const text = alt.trim().replace(/(>=|<=|>|<|=|\^|~)\s+/g, '$1');
    if (text === '' || text === '*') return [];
    const hyphen = /^(\S+)\s+-\s+(\S+)$/.exec(text);
    if (hyphen) {
      const a = parsePartial(hyphen[1]);
      const b = parsePartial(hyphen[2]);
      if (!a || !b) throw new SemverRangeError(`bad hyphen range ${JSON.stringify(alt.trim())}`);
      return [...expand('>=', a), ...expand('<=', b)];
    }
    return text.split(/\s+/).flatMap((tok) => {
      const m = /^(>=|<=|>|<|=|\^|~)?(.+)$/.exec(tok);
      const p = m && parsePartial(m[2]);
      if (!m || !p) throw new SemverRangeError(`bad comparator ${JSON.stringify(tok)} in ${JSON.stringify(range)}`);
      return expand(m[1] ?? '', p);
    });
  });
}

function test(c: Comparator, v: Version): boolean {
  const d = compareVersions(v, c.v);
  return c.op === '<' ? d < 0 : c.op === '<=' ? d <= 0 : c.op === '>' ? d > 0 : c.op === '>=' ? d >= 0 : d === 0;
}

/**
 * True when `version` is in `range`. A pre-release version only matches a set whose comparators
 * name a pre-release of the same major.minor.patch (npm's rule: `>=1.0.0` excludes `2.0.0-rc.1`).
 */
export function satisfies(version: string | Version, range: string): boolean {
  const v = typeof version === 'string' ? parseVersion(version) : version;
  if (!v) return false;
  return parseRange(range).some((set) => {
    if (!set.every((c) => test(c, v))) return false;
    if (!v.pre.length) return true;
    return set.some(
      (c) => c.v.pre.length > 0 && c.v.major === v.major && c.v.minor === v.minor && c.v.patch === v.patch,
    );
  });
}

/** Null when the range parses, else the reason (for manifest linting and clear errors). */
export function rangeProblem(range: string): string | null {
  try {
    parseRange(range);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
