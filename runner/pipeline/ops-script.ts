/**
 * The `script` op: calls a hook of a package script in the sandbox (sandbox/), handing it values
 * from the environment and storing what it returns. Tensors cross as handles (bulk data stays on
 * the host); other values are copied as JSON. The limits are the sandbox's: the runner never runs
 * package code outside it.
 */
import { Type } from '../../spec/typebox-lite.js';
import { defineOp, Name, type OpRun } from './registry.js';
import { tensorValue, type Value } from './values.js';

const As = Type.Union([Type.Literal('json'), Type.Literal('tensor'), Type.Literal('tensors'), Type.Literal('texts')]);

/**
 * A field of the hook's argument or result, enforced (a Record's key pattern is not, without
 * additionalProperties: false). Not `__proto__`: as an input it set the argument's prototype and
 * never reached the hook; as an output no result can carry it (E_SANDBOX_OUTPUT).
 */
const Field = Type.String({ pattern: '^(?!__proto__$)[A-Za-z_][A-Za-z0-9_]{0,63}$' });

const ScriptParams = Type.Object(
  {
    /** Hook argument field → environment value. */
    inputs: Type.Record(Field, Name, { additionalProperties: false }),
    /** Constant fields added to the hook's argument (small JSON). */
    constants: Type.Optional(Type.Record(Field, Type.Unknown(), { additionalProperties: false })),
    /** Result field → environment value. */
    outputs: Type.Record(Field, Name, { additionalProperties: false }),
    /** How a result field becomes a value (default json). */
    as: Type.Optional(Type.Record(Type.String(), As)),
    deadlineMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
  },
  { additionalProperties: false },
);

/** An environment value as the hook sees it. */
function toGuest(v: Value, name: string, x: OpRun): unknown {
  switch (v.kind) {
    case 'tensor':
      return { type: v.type, dims: v.dims, data: v.data };
    case 'tensors':
      return v.items.map((t) => ({ type: t.type, dims: t.dims, data: t.data }));
    case 'raw':
      return v.value;
    case 'texts':
      return v.texts.map((text, i) => ({ text, score: v.scores[i] }));
    case 'text-lines':
      return v.lines;
    case 'image':
    case 'images':
      return x.fail(
        `value ${JSON.stringify(name)} is an image; pass scripts tensors (normalize first) so pixels stay on the host`,
      );
    default: {
      const { kind: _kind, ...rest } = v;
      return rest;
    }
  }
}

const isTensor = (t: unknown): t is { type: string; dims: number[]; data: ArrayBufferView } =>
  !!t &&
  typeof t === 'object' &&
  'type' in t &&
  'dims' in t &&
  'data' in t &&
  ArrayBuffer.isView((t as { data: unknown }).data);

function fromGuest(value: unknown, as: string, field: string, x: OpRun): Value {
  switch (as) {
    case 'tensor':
      if (!isTensor(value)) x.fail(`script result ${field} is not a tensor`);
      return tensorValue(value as never);
    case 'tensors':
      if (!Array.isArray(value) || !value.every(isTensor)) x.fail(`script result ${field} is not a list of tensors`);
      return { kind: 'tensors', items: (value as never[]).map((t) => tensorValue(t)) };
    case 'texts': {
      const ok =
        Array.isArray(value) &&
        value.every((t) => t && typeof t === 'object' && typeof t.text === 'string' && typeof t.score === 'number');
      if (!ok) x.fail(`script result ${field} is not a list of {text, score}`);
      const list = value as { text: string; score: number }[];
      return { kind: 'texts', texts: list.map((t) => t.text), scores: Float32Array.from(list, (t) => t.score) };
    }
    default:
      return { kind: 'raw', value };
  }
}

defineOp({
  op: 'script',
  stage: 'post',
  summary:
    "Calls the step's `hook` of its `script` in the sandbox with `inputs` (tensors as handles) and `constants`; stores the result fields named in `outputs` (as json, tensor, tensors or texts).",
  params: ScriptParams,
  reads: (p) => Object.values(p.inputs),
  writes: (p) => Object.values(p.outputs),
  check: (p) => {
    for (const k of Object.keys(p.as ?? {}))
      if (!Object.hasOwn(p.outputs, k)) return `as names ${JSON.stringify(k)}, which is not in outputs`;
    return undefined;
  },
  async run(p, x) {
    if (!x.step.script || !x.step.hook) x.fail('a script step needs `script` and `hook`');
    if (!x.ctx.script) x.fail('this runner cannot run package scripts');
    const host = await x.ctx.script!(x.step.script!);
    const args: Record<string, unknown> = { ...(p.constants ?? {}) };
    for (const [field, name] of Object.entries(p.inputs)) args[field] = toGuest(x.get(name), name, x);
    const result = (await host.call(x.step.hook!, args, p.deadlineMs ? { deadlineMs: p.deadlineMs } : {})) as Record<
      string,
      unknown
    > | null;
    if (!result || typeof result !== 'object' || Array.isArray(result)) x.fail('script hook did not return an object');
    for (const [field, name] of Object.entries(p.outputs)) {
      // own fields only: `toString` is no field of a result that lacks it
      if (!Object.hasOwn(result!, field)) x.fail(`script result has no field ${JSON.stringify(field)}`);
      x.set(name, fromGuest(result![field], p.as?.[field] ?? 'json', field, x));
    }
  },
});
