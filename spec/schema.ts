/**
 * The one source of the manifest's shape. TypeScript types are inferred from it and
 * spec/manifest.schema.json is generated from it (`npm run gen:schema`); a test fails on drift.
 */
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { BLOCK_SIZE, FORMAT_ID, LIMITS } from './limits.js';
import { PRECISIONS } from './precision.js';

const Hex64 = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'lower-case hex SHA-256' });
const Id = Type.String({
  pattern: '^[a-z0-9][a-z0-9._-]{0,63}$',
  description: 'identifier: lower-case letters, digits, . _ -',
});
const PathString = Type.String({
  minLength: 1,
  maxLength: LIMITS.pathBytes,
  description: 'entry name under the safe-path grammar (FORMAT.md §3)',
});
const Semver = Type.String({
  pattern:
    '^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(?:-((?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\\.(?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\\+([0-9a-zA-Z-]+(?:\\.[0-9a-zA-Z-]+)*))?$',
  maxLength: 128,
  description: 'semantic version 2.0.0',
});
const Text = (max: number, description?: string) =>
  Type.String({ maxLength: max, ...(description ? { description } : {}) });
const Params = Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' }), Type.Unknown(), {
  additionalProperties: false,
  description: 'step parameters; each op documents its own',
});

export const DataType = Type.Union(
  ['image', 'tensor', 'text', 'text-lines', 'classification', 'boxes', 'mask', 'json'].map((t) => Type.Literal(t)),
  { description: 'type of an input or output' },
);

export const IoSpec = Type.Object(
  {
    // Not `__proto__`: outputs and CLI inputs are plain objects keyed by these names, and that key
    // set the object's prototype instead of holding the value (it silently vanished).
    name: Type.String({
      pattern: '^(?!__proto__$)[A-Za-z_][A-Za-z0-9_]{0,63}$',
      description: 'input or output name: letters, digits, _ (not __proto__)',
    }),
    type: DataType,
    description: Type.Optional(Text(1024)),
    dtype: Type.Optional(
      Type.Union(['float32', 'float16', 'int64', 'int32', 'uint8', 'bool', 'string'].map((t) => Type.Literal(t))),
    ),
    shape: Type.Optional(
      Type.Array(Type.Union([Type.Integer({ minimum: -1 }), Type.String({ maxLength: 32 })]), { maxItems: 8 }),
    ),
    optional: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const Accelerator = Type.Object(
  {
    kind: Type.Union(['gpu', 'npu', 'tpu', 'dsp'].map((t) => Type.Literal(t))),
    vendor: Type.String({
      pattern: '^[a-z0-9-]{1,32}$',
      description: 'nvidia, amd, intel, apple, rockchip, qualcomm, …',
    }),
    arch: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Za-z0-9_.+-]{1,32}$' }), {
        minItems: 1,
        maxItems: 32,
        description: 'e.g. sm_86, sm_90, rk3588; any listed one matches',
      }),
    ),
    minArch: Type.Optional(
      Type.String({ pattern: '^sm_[0-9]{2,3}$', description: 'lowest CUDA compute capability that runs this variant' }),
    ),
    minMemoryMiB: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);

export const Requirements = Type.Object(
  {
    os: Type.Optional(
      Type.Array(Type.Union(['linux', 'darwin', 'win32', 'android', 'browser'].map((t) => Type.Literal(t))), {
        minItems: 1,
        uniqueItems: true,
      }),
    ),
    arch: Type.Optional(
      Type.Array(Type.Union(['x64', 'arm64', 'arm', 'wasm32', 'riscv64'].map((t) => Type.Literal(t))), {
        minItems: 1,
        uniqueItems: true,
      }),
    ),
    cpuFeatures: Type.Optional(
      Type.Array(Type.String({ pattern: '^[a-z0-9_.]{1,32}$' }), {
        maxItems: 32,
        uniqueItems: true,
        description: 'all must be present: avx2, avx512f, avx512_vnni, amx_tile, neon, sve, …',
      }),
    ),
    accelerator: Type.Optional(Accelerator),
    runtimeVersion: Type.Optional(
      Type.String({ maxLength: 128, description: 'semver range of the runtime, e.g. ">=1.16.0 <2"' }),
    ),
    executionProviders: Type.Optional(
      Type.Array(Type.String({ pattern: '^[a-z0-9_-]{1,32}$' }), {
        minItems: 1,
        maxItems: 8,
        description: 'onnxruntime execution providers tried in order',
      }),
    ),
    minMemoryMiB: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);

/**
 * What a variant changes in one pipeline step: its params, merged over the step's (RFC 7396 JSON
 * merge patch: a value replaces, an object merges, null removes), and optionally its op.
 */
export const StepPatch = Type.Object(
  {
    op: Type.Optional(
      Type.String({ pattern: '^[a-z][a-z0-9-]{0,63}$', description: "a different op: params then replace the step's" }),
    ),
    params: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' }), Type.Unknown(), {
        additionalProperties: false,
        description: "merged over the step's params (RFC 7396: null removes a param)",
      }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const Variant = Type.Object(
  {
    id: Id,
    runtime: Type.String({
      pattern: '^[a-z0-9-]{1,32}$',
      description: 'onnxruntime, tensorrt, rknn, openvino, coreml, tflite, …',
    }),
    precision: Type.Union(PRECISIONS.map((t) => Type.Literal(t))),
    files: Type.Array(PathString, {
      minItems: 1,
      maxItems: 64,
      description: 'first is the entry point; all are stored and aligned',
    }),
    requires: Type.Optional(Requirements),
    description: Type.Optional(Text(1024)),
    steps: Type.Optional(
      Type.Record(Id, StepPatch, {
        additionalProperties: false,
        maxProperties: 256,
        description:
          'changes this variant makes to pipeline steps, by step id, when it is the variant loaded (FORMAT.md §4.1)',
      }),
    ),
  },
  { additionalProperties: false },
);

/**
 * A model declared as the head of a split (FORMAT.md §4.2): its outputs named in `at` are the cut
 * tensors, which model `tail` takes as inputs by the same names and finishes, here or on a peer.
 */
export const Split = Type.Object(
  {
    tail: Id,
    at: Type.Array(Type.String({ minLength: 1, maxLength: 256 }), {
      minItems: 1,
      maxItems: 16,
      uniqueItems: true,
      description: "the cut tensors: outputs of this model and, by the same names, the tail model's inputs",
    }),
  },
  { additionalProperties: false },
);

export const Model = Type.Object(
  {
    id: Id,
    description: Type.Optional(Text(1024)),
    variants: Type.Array(Variant, { minItems: 1, maxItems: 64 }),
    split: Type.Optional(Split),
  },
  { additionalProperties: false },
);

export const Step = Type.Object(
  {
    op: Type.String({
      pattern: '^[a-z][a-z0-9-]{0,63}$',
      description: 'operation name; FORMAT.md §6 lists the v1 ops',
    }),
    id: Type.Optional(Id),
    model: Type.Optional(Id),
    script: Type.Optional(PathString),
    hook: Type.Optional(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]{0,63}$' })),
    params: Type.Optional(Params),
  },
  { additionalProperties: false },
);

export const SandboxPolicy = Type.Object(
  {
    memoryMiB: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096 })),
    timeMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
    stackKiB: Type.Optional(Type.Integer({ minimum: 16, maximum: 65536 })),
  },
  { additionalProperties: false },
);

export const Script = Type.Object(
  {
    path: PathString,
    hooks: Type.Array(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]{0,63}$' }), {
      minItems: 1,
      maxItems: 32,
      uniqueItems: true,
    }),
    policy: Type.Optional(SandboxPolicy),
  },
  { additionalProperties: false },
);

export const Pipeline = Type.Object(
  {
    steps: Type.Array(Step, { maxItems: 256 }),
    scripts: Type.Optional(Type.Array(Script, { maxItems: 64 })),
  },
  { additionalProperties: false },
);

export const Asset = Type.Object(
  {
    id: Id,
    path: PathString,
    kind: Type.Union(['labels', 'vocabulary', 'config', 'example', 'other'].map((t) => Type.Literal(t))),
    description: Type.Optional(Text(1024)),
  },
  { additionalProperties: false },
);

export const FileRecord = Type.Object(
  {
    path: PathString,
    size: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
    sha256: Hex64,
    blocks: Type.Array(Hex64, {
      description: `SHA-256 of each ${BLOCK_SIZE}-byte block, in order; the last may be shorter`,
    }),
  },
  { additionalProperties: false },
);

const common = {
  name: Type.String({
    pattern: '^(?:@[a-z0-9][a-z0-9._-]{0,63}/)?[a-z0-9][a-z0-9._-]{0,127}$',
    description: 'package name, npm style',
  }),
  version: Semver,
  sequence: Type.Integer({
    minimum: 0,
    maximum: Number.MAX_SAFE_INTEGER,
    description: 'monotonically increasing release counter; verifiers refuse a lower one than seen (anti-rollback)',
  }),
  description: Type.Optional(Text(4096)),
  license: Type.String({ minLength: 1, maxLength: 256, description: 'SPDX license expression' }),
  task: Type.String({
    pattern: '^[a-z][a-z0-9-]{0,63}$',
    description: 'ocr, image-classification, object-detection, segmentation, …',
  }),
  expires: Type.Optional(
    Type.String({ format: 'date-time', description: 'RFC 3339; verifiers refuse the package after this instant' }),
  ),
  inputs: Type.Array(IoSpec, { minItems: 1, maxItems: 64 }),
  outputs: Type.Array(IoSpec, { minItems: 1, maxItems: 64 }),
  models: Type.Array(Model, { minItems: 1, maxItems: 64 }),
  pipeline: Pipeline,
  assets: Type.Optional(Type.Array(Asset, { maxItems: 1024 })),
  metadata: Type.Optional(
    Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_.-]{0,63}$' }), Type.String({ maxLength: 4096 }), {
      additionalProperties: false,
      description: 'free-form string metadata (authors, homepage, …)',
    }),
  ),
};

/** The manifest stored in a package (`xpkg/manifest.json`). */
export const Manifest = Type.Object(
  {
    format: Type.Literal(FORMAT_ID),
    ...common,
    blockSize: Type.Literal(BLOCK_SIZE),
    files: Type.Array(FileRecord, { maxItems: LIMITS.entries, description: 'every payload entry; sorted by path' }),
  },
  {
    additionalProperties: false,
    $id: 'https://xpkg.dev/schema/manifest-1.json',
    title: 'xpkg manifest, format xpkg/1',
  },
);

/** The manifest source in a folder given to `xpkg pack` (`xpkg.json`): no digests yet. */
export const ManifestSource = Type.Object(
  {
    format: Type.Optional(Type.Literal(FORMAT_ID)),
    ...common,
    include: Type.Optional(
      Type.Array(PathString, {
        maxItems: LIMITS.entries,
        description: 'extra files to carry that nothing else references',
      }),
    ),
  },
  {
    additionalProperties: false,
    $id: 'https://xpkg.dev/schema/manifest-source-1.json',
    title: 'xpkg manifest source (xpkg.json), format xpkg/1',
  },
);

export type Manifest = Static<typeof Manifest>;
export type ManifestSource = Static<typeof ManifestSource>;
export type FileRecord = Static<typeof FileRecord>;
export type Variant = Static<typeof Variant>;
export type StepPatch = Static<typeof StepPatch>;
export type Model = Static<typeof Model>;
export type Split = Static<typeof Split>;
export type Requirements = Static<typeof Requirements>;
export type Accelerator = Static<typeof Accelerator>;
export type Step = Static<typeof Step>;
export type Script = Static<typeof Script>;
export type Asset = Static<typeof Asset>;
export type IoSpec = Static<typeof IoSpec>;

/** Plain JSON Schema documents (TypeBox adds symbol keys; JSON round-trip drops them). */
export function jsonSchemas(): Record<string, TSchema> {
  return {
    'manifest.schema.json': JSON.parse(JSON.stringify(Manifest)),
    'manifest-source.schema.json': JSON.parse(JSON.stringify(ManifestSource)),
  };
}
