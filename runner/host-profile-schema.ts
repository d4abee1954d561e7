/**
 * The host profile's JSON Schema (TypeBox). Only types are taken from here at run time: the validator
 * is compiled at build time into spec/generated/host-profile.ts (`npm run gen:validators`).
 */
import { type Static, Type } from '@sinclair/typebox';

const Name = Type.String({ minLength: 1, maxLength: 256 });
/** Memory sizes in MiB: up to 1 EiB, far above any machine, so a size of 1e300 is refused, not rendered. */
const MiB = Type.Integer({ minimum: 0, maximum: 2 ** 40 }); // host.ts detectHost keeps detection under it

export const Device = Type.Object(
  {
    kind: Type.Union(['gpu', 'npu', 'tpu', 'dsp'].map((k) => Type.Literal(k))),
    vendor: Type.String({ pattern: '^[a-z0-9-]{1,32}$' }),
    name: Name,
    /** sm_89 for NVIDIA GPUs, the SoC (rk3588) for Rockchip NPUs, the generation for others. */
    arch: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.+-]{1,32}$' })),
    memoryMiB: Type.Optional(MiB),
    driver: Type.Optional(Type.String({ maxLength: 64 })),
    /** Highest CUDA version the driver supports (NVIDIA). */
    cuda: Type.Optional(Type.String({ maxLength: 32 })),
    /** Where the facts came from (`nvidia-smi`, `/proc/driver/nvidia`, `device-tree`, …). */
    source: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: false },
);

export const RuntimeInfo = Type.Object(
  {
    available: Type.Boolean(),
    version: Type.Optional(Type.String({ maxLength: 64 })),
    /** onnxruntime: the execution providers that actually load. */
    providers: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z0-9_-]{1,32}$' }), { maxItems: 32 })),
    /** Providers the runtime knows but that did not load, with why. */
    unavailable: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Name,
            reason: Type.String({ maxLength: 2048 }),
            /** Why, as a stable code (runner/host-accel.ts AccelReasonCode, or `load-failed`). */
            code: Type.Optional(Type.String({ pattern: '^[a-z0-9-]{1,32}$' })),
          },
          { additionalProperties: false },
        ),
        { maxItems: 32 },
      ),
    ),
    /** Library file it was found at. */
    path: Type.Optional(Type.String({ maxLength: 4096 })),
    reason: Type.Optional(Type.String({ maxLength: 2048 })),
  },
  { additionalProperties: false },
);

export const NotDetected = Type.Object(
  { what: Name, reason: Type.String({ maxLength: 2048 }) },
  { additionalProperties: false },
);

export const HostProfileSchema = Type.Object(
  {
    format: Type.Literal('xpkg-host/1'), // HOST_PROFILE_FORMAT (host-profile.ts; kept apart so that file loads no TypeBox)
    /** Free text: which machine this profile describes. */
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    os: Type.Union(
      [
        'linux',
        'darwin',
        'win32',
        'android',
        'browser',
        'freebsd',
        'openbsd',
        'netbsd',
        'sunos',
        'aix',
        'cygwin',
        'haiku',
      ].map((k) => Type.Literal(k)),
    ),
    arch: Type.Union(
      [
        'x64',
        'arm64',
        'arm',
        'wasm32',
        'riscv64',
        'ia32',
        'ppc',
        'ppc64',
        's390',
        's390x',
        'loong64',
        'mips',
        'mipsel',
      ].map((k) => Type.Literal(k)),
    ),
    cpu: Type.Object(
      {
        model: Name,
        logicalCores: Type.Integer({ minimum: 1, maximum: 65536 }),
        physicalCores: Type.Integer({ minimum: 1, maximum: 65536 }),
        /** Lower-case feature names; both the kernel's names and normalised aliases (asimddp → dotprod). */
        features: Type.Array(Type.String({ pattern: '^[a-z0-9_.]{1,64}$' }), { maxItems: 1024, uniqueItems: true }),
      },
      { additionalProperties: false },
    ),
    /** Memory this process may use: the machine's, or its cgroup's limit where lower (`limits`). */
    memoryMiB: MiB,
    /**
     * Where this process may use less than the machine has (runner/host-limits.ts): its cgroup's
     * CPU quota in CPUs (1.5), the CPUs of its affinity mask, its cgroup's memory limit, and the
     * threads backends use by default under them. Absent when nothing binds.
     */
    limits: Type.Optional(
      Type.Object(
        {
          cpuQuota: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 65536 })),
          cpusAllowed: Type.Optional(Type.Integer({ minimum: 1, maximum: 65536 })),
          memoryMiB: Type.Optional(MiB),
          threads: Type.Integer({ minimum: 1, maximum: 65536 }),
        },
        { additionalProperties: false },
      ),
    ),
    gpus: Type.Array(Device, { maxItems: 64 }),
    npus: Type.Array(Device, { maxItems: 64 }),
    /** By manifest runtime name: onnxruntime, tensorrt, rknn, openvino, coreml, … */
    // a name that is no runtime name is refused, not left unchecked (patternProperties alone checks only names that match)
    runtimes: Type.Record(Type.String({ pattern: '^[a-z0-9-]{1,32}$' }), RuntimeInfo, { additionalProperties: false }),
    notDetected: Type.Array(NotDetected, { maxItems: 256 }),
    /** The pre/post-processing kernel backend of this xpkg (native/index.ts nativeInfo()). */
    kernels: Type.Optional(
      Type.Object(
        {
          backend: Type.Union([Type.Literal('native'), Type.Literal('portable')]),
          simd: Type.String({ maxLength: 64 }),
          threads: Type.Integer({ minimum: 1, maximum: 65536 }),
          cuda: Type.Boolean(),
          loadError: Type.Optional(Type.String({ maxLength: 2048 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, $id: 'https://xpkg.dev/schema/host-1.json', title: 'xpkg host profile' },
);

export type HostProfile = Static<typeof HostProfileSchema>;
export type HostDevice = Static<typeof Device>;
export type RuntimeInfo = Static<typeof RuntimeInfo>;
