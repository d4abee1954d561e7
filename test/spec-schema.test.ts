import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, exitStatusOf } from '../spec/errors.js';
import { renderSchemas } from '../spec/gen-schema.js';

describe('generated JSON Schema', () => {
  it('committed schema files match spec/schema.ts (run `npm run gen:schema` after changing it)', () => {
    for (const [name, text] of Object.entries(renderSchemas())) {
      expect(readFileSync(`spec/${name}`, 'utf8'), `spec/${name} drifted`).toBe(text);
    }
  });
});

describe('error codes', () => {
  it('every code has a non-zero exit status and appears in FORMAT.md §9', () => {
    const doc = readFileSync('spec/FORMAT.md', 'utf8');
    for (const code of ERROR_CODES) {
      expect(exitStatusOf(code)).toBeGreaterThan(0);
      const prefix = code.replace(/^(E_[A-Z]+_).*/, '$1');
      expect(doc.includes(code) || doc.includes(`${prefix}*`), `${code} undocumented`).toBe(true);
    }
  });
});
