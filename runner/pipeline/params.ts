/**
 * Checks a step's params against its op's schema with the validator compiled at build time
 * (spec/generated/ops.ts). An op whose schema differs from the one compiled there (an op defined
 * outside this build, or a generated file not yet regenerated) is compiled here, once, with ajv
 * loaded only then: the answer never depends on the generated file being current.
 */
import type { ErrorObject, ValidateFunction } from 'ajv';
import { ajvModule } from '../../platform/index.js';
import { opParams } from '../../spec/generated/ops.js';
import { OPS_AJV_OPTIONS } from '../../spec/validator-options.js';
import type { OpDef } from './registry.js';

export interface ParamProblem {
  /** JSON pointer under the params object ('' for the object itself). */
  path: string;
  message: string;
}

const generated = opParams as unknown as Record<string, { validate: ValidateFunction; schema: string }>;
const validators = new WeakMap<OpDef, ValidateFunction>();

function validatorOf(def: OpDef): ValidateFunction {
  let v = validators.get(def);
  if (!v) {
    const g = Object.hasOwn(generated, def.op) ? generated[def.op] : undefined;
    const schema = JSON.stringify(def.params);
    if (g && g.schema === schema) v = g.validate;
    else {
      const { Ajv } = ajvModule();
      v = new Ajv(OPS_AJV_OPTIONS).compile(JSON.parse(schema));
    }
    validators.set(def, v);
  }
  return v;
}

/** A missing or unknown param is reported at its own path (`/width`), not at the object's. */
function pathOf(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  const key =
    e.keyword === 'required'
      ? p.missingProperty
      : e.keyword === 'additionalProperties'
        ? p.additionalProperty
        : undefined;
  return typeof key === 'string' ? `${e.instancePath}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}` : e.instancePath;
}

function messageOf(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  if (e.keyword === 'additionalProperties') return `unknown param ${JSON.stringify(p.additionalProperty)}`;
  if (e.keyword === 'const') return `${e.message}: ${JSON.stringify(p.allowedValue)}`;
  return e.message ?? 'invalid';
}

/** The first `limit` problems of `params` (none when they match the op's schema). */
export function paramProblems(def: OpDef, params: unknown, limit = 5): ParamProblem[] {
  const v = validatorOf(def);
  if (v(params)) return [];
  return (v.errors ?? []).slice(0, limit).map((e) => ({ path: pathOf(e), message: messageOf(e) }));
}
