/**
 * The subset of TypeBox's `Type` builder the pipeline ops use, producing the same JSON Schema and the
 * same static types, without loading TypeBox (~250 ES modules) when a command starts. Schemas made
 * here carry no TypeBox symbols, so they are checked with the validators compiled at build time
 * (spec/generated/ops.ts) rather than TypeBox's `Value`. test/cold-start.test.ts compares the output
 * with TypeBox's own.
 */
import type { Type as TypeBox } from '@sinclair/typebox';

type Builder = Pick<
  typeof TypeBox,
  | 'Array'
  | 'Boolean'
  | 'Integer'
  | 'Literal'
  | 'Number'
  | 'Object'
  | 'Optional'
  | 'Record'
  | 'String'
  | 'Union'
  | 'Unknown'
>;
type Schema = Record<string, unknown>;
type Options = Record<string, unknown> | undefined;

// Marks a property schema optional, like TypeBox's OptionalKind symbol (dropped by JSON).
const OPTIONAL = Symbol('optional');
const make = (schema: Schema, options: Options): Schema => (options !== undefined ? { ...options, ...schema } : schema);

const lite = {
  Array: (items: Schema, options?: Options) => make({ type: 'array', items }, options),
  Boolean: (options?: Options) => make({ type: 'boolean' }, options),
  Integer: (options?: Options) => make({ type: 'integer' }, options),
  Number: (options?: Options) => make({ type: 'number' }, options),
  String: (options?: Options) => make({ type: 'string' }, options),
  Unknown: (options?: Options) => make({}, options),
  Literal: (value: string | number | boolean, options?: Options) => make({ const: value, type: typeof value }, options),
  Optional: (schema: Schema) => ({ ...schema, [OPTIONAL]: true }),
  Object(properties: Record<string, Schema>, options?: Options) {
    const required = Object.keys(properties).filter((k) => !(OPTIONAL in properties[k]));
    return make(
      required.length > 0 ? { type: 'object', required, properties } : { type: 'object', properties },
      options,
    );
  },
  Union(types: Schema[], options?: Options) {
    if (types.length === 0) return make({ not: {} }, options);
    return types.length === 1 ? make(types[0], options) : make({ anyOf: types }, options);
  },
  /** Keys are a string schema: its pattern (or any string) becomes the one pattern property, as in TypeBox. */
  Record(key: Schema, value: Schema, options: Options = {}) {
    if (key.type !== 'string' || 'const' in key) throw new Error('typebox-lite: Record keys must be Type.String()');
    return make(
      { type: 'object', patternProperties: { [typeof key.pattern === 'string' ? key.pattern : '^(.*)$']: value } },
      options,
    );
  },
};

export const Type = lite as unknown as Builder;
