/** Writes spec/*.schema.json from spec/schema.ts. `npm run gen:schema`; test/spec-schema.test.ts checks drift. */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonSchemas } from './schema.js';

export function renderSchemas(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, schema] of Object.entries(jsonSchemas())) out[name] = `${JSON.stringify(schema, null, 2)}\n`;
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = dirname(fileURLToPath(import.meta.url));
  for (const [name, text] of Object.entries(renderSchemas())) writeFileSync(join(dir, name), text);
}
