/**
 * A strict parser of Prometheus' text exposition format (version 0.0.4), written from the format's
 * description (prometheus.io/docs/instrumenting/exposition_formats): it throws on anything a
 * scraper could read differently, so a test that parses `/metrics` with it proves the page valid.
 *
 * Checked: line grammar (names, label names, escapes `\\`, `\"`, `\n` only, float values with
 * NaN/±Inf, optional integer timestamp), one HELP and one TYPE per family, TYPE before the family's
 * first sample, a family's lines together, no duplicate series or label names, no `__` label
 * names, histograms (`le` on every bucket, cumulative counts, a `+Inf` bucket equal to `_count`,
 * `_sum` and `_count` present).
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help?: string;
  samples: Sample[];
}

const METRIC = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
/** Go's ParseFloat, which the format names (decimal forms; Inf, Infinity and NaN in any case). */
const FLOAT = /^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf|infinity|nan)$/i;

function fail(n: number, line: string, why: string): never {
  throw new Error(`exposition line ${n + 1}: ${why}: ${JSON.stringify(line.slice(0, 200))}`);
}

function parseValue(s: string): number {
  if (!FLOAT.test(s)) throw new Error(`not a float: ${s}`);
  if (/inf/i.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
  return /nan/i.test(s) ? NaN : Number(s);
}

/** `{a="x",b="y"}` from position `i` of `line` (at `{`): the labels and the index after `}`. */
function parseLabels(line: string, i: number, n: number): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  i++;
  for (;;) {
    if (line[i] === '}') return [labels, i + 1];
    const eq = line.indexOf('=', i);
    if (eq < 0) fail(n, line, 'a label without =');
    const name = line.slice(i, eq);
    if (!LABEL.test(name) || name.startsWith('__')) fail(n, line, `bad label name ${name}`);
    if (name in labels) fail(n, line, `label ${name} twice`);
    if (line[eq + 1] !== '"') fail(n, line, 'a label value not quoted');
    let v = '';
    let j = eq + 2;
    for (; j < line.length && line[j] !== '"'; j++) {
      if (line[j] !== '\\') {
        v += line[j];
        continue;
      }
      const e = line[++j];
      if (e === '\\' || e === '"') v += e;
      else if (e === 'n') v += '\n';
      else fail(n, line, `escape \\${e} in a label value`);
    }
    if (j >= line.length) fail(n, line, 'an unterminated label value');
    labels[name] = v;
    i = j + 1;
    if (line[i] === ',') i++;
    else if (line[i] !== '}') fail(n, line, 'labels not separated by ,');
  }
}

/** The family a sample name belongs to, given the families whose TYPE was declared. */
function familyOf(name: string, declared: Map<string, Family>): Family | undefined {
  const f = declared.get(name);
  if (f) return f;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    const base = name.endsWith(suffix) ? declared.get(name.slice(0, -suffix.length)) : undefined;
    if (base && (base.type === 'histogram' || (base.type === 'summary' && suffix !== '_bucket'))) return base;
  }
  return undefined;
}

export function parseExposition(text: string): Map<string, Family> {
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  const finished = new Set<string>();
  let current: Family | undefined;
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((line, n) => {
    if (line.trim() === '') return;
    if (line.includes('\r')) fail(n, line, 'a carriage return');
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) return; // a comment
      const [, kind, name, rest = ''] = m;
      if (!METRIC.test(name)) fail(n, line, 'bad metric name');
      let f = families.get(name);
      if (!f) {
        if (finished.has(name)) fail(n, line, 'a family split in two');
        families.set(name, (f = { name, type: 'untyped', samples: [] }));
      }
      if (current && current !== f) finished.add(current.name);
      if (finished.has(name)) fail(n, line, 'a family split in two');
      current = f;
      if (kind === 'HELP') {
        if (f.help !== undefined) fail(n, line, 'a second HELP');
        if (/\\(?![\\n])/.test(rest)) fail(n, line, 'a bad escape in HELP');
        f.help = rest.replace(/\\(\\|n)/g, (_x, c: string) => (c === 'n' ? '\n' : '\\'));
      } else {
        if (!TYPES.has(rest)) fail(n, line, 'unknown TYPE');
        if ((f as Family & { typed?: boolean }).typed || f.samples.length) fail(n, line, 'TYPE late or twice');
        Object.assign(f, { type: rest, typed: true });
      }
      return;
    }
    const nameEnd = line.search(/[{ ]/);
    if (nameEnd <= 0) fail(n, line, 'no metric name');
    const name = line.slice(0, nameEnd);
    if (!METRIC.test(name)) fail(n, line, 'bad metric name');
    let [labels, i]: [Record<string, string>, number] = [{}, nameEnd];
    if (line[i] === '{') [labels, i] = parseLabels(line, i, n);
    if (line[i] !== ' ') fail(n, line, 'no space before the value');
    const parts = line.slice(i + 1).split(' ');
    if (parts.length > 2 || (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])))
      fail(n, line, 'trailing text after the value');
    let value: number;
    try {
      value = parseValue(parts[0]);
    } catch (e) {
      fail(n, line, (e as Error).message);
    }
    let f = familyOf(name, families);
    if (!f) {
      if (finished.has(name)) fail(n, line, 'a family split in two');
      families.set(name, (f = { name, type: 'untyped', samples: [] }));
    }
    if (current && current !== f) finished.add(current.name);
    if (finished.has(f.name)) fail(n, line, 'a family split in two');
    current = f;
    const key = `${name}{${Object.entries(labels)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(',')}}`;
    if (seen.has(key)) fail(n, line, 'a duplicate series');
    seen.add(key);
    f.samples.push({ name, labels, value });
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const g = groups.get(key) ?? { buckets: [] };
    groups.set(key, g);
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}: a bucket without le`);
      g.buckets.push([parseValue(le), s.value]);
    } else if (s.name === `${f.name}_sum`) g.sum = s.value;
    else if (s.name === `${f.name}_count`) g.count = s.value;
    else throw new Error(`${f.name}: sample ${s.name} in a histogram`);
  }
  for (const [key, g] of groups) {
    const what = `${f.name}${key}`;
    if (g.sum === undefined || g.count === undefined) throw new Error(`${what}: no _sum or _count`);
    const b = g.buckets;
    for (let i = 1; i < b.length; i++)
      if (!(b[i][0] > b[i - 1][0]) || b[i][1] < b[i - 1][1]) throw new Error(`${what}: buckets not cumulative`);
    if (b.at(-1)?.[0] !== Infinity || b.at(-1)?.[1] !== g.count) throw new Error(`${what}: +Inf bucket ≠ _count`);
  }
}

/** Every series as `name{labels}`, for comparing what a page holds before and after. */
export function seriesKeys(families: Map<string, Family>): Set<string> {
  const keys = new Set<string>();
  for (const f of families.values())
    for (const s of f.samples) keys.add(`${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`);
  return keys;
}

/** Label values of one family's samples. */
export function labelValues(families: Map<string, Family>): string[] {
  return [...families.values()].flatMap((f) => f.samples.flatMap((s) => Object.values(s.labels)));
}
