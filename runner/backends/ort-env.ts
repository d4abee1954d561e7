/**
 * onnxruntime's own telemetry writes a device id and a database under the user's home
 * (~/.cache/Microsoft/DeveloperTools/.onnxruntime) and would upload from them: xpkg turns it off
 * unless the user set ORT_DISABLE_TELEMETRY. onnxruntime reads the variable from the process's
 * environment when its library starts, in whichever thread loads it first, and a worker thread's
 * `process.env` is a copy of its own (setting it there reaches no C code): so this runs on the main
 * thread before onnxruntime loads in it and before a worker that loads it starts (image-decoder.ts
 * pre-starts onnxruntime in its worker: without this, about one `xpkg run` in two wrote the folder).
 */
export function quietOnnxruntime(env: NodeJS.ProcessEnv = process.env): void {
  env.ORT_DISABLE_TELEMETRY ??= '1';
}

const LOG_LEVELS = ['verbose', 'info', 'warning', 'error', 'fatal'] as const;
export type OrtLogLevel = (typeof LOG_LEVELS)[number];

/**
 * The level of onnxruntime's process-wide log, which kernels write to directly (the session's
 * `logSeverityLevel` does not reach it): `error` unless XPKG_ORT_LOG_LEVEL names another. At its
 * default, `warning`, a one-shot `xpkg run` of the OCR package on the H200 printed 267 lines of
 * "OP Conv(…) running in Fallback mode" (cuDNN's default algorithms, chosen on purpose) on stderr.
 * onnxruntime reads it once, when the first session of the process creates its environment: every
 * thread that may create the first session sets it first (onnxruntime.ts init, decode-worker.ts).
 */
export function ortLogLevel(env: NodeJS.ProcessEnv = process.env): OrtLogLevel {
  const asked = env.XPKG_ORT_LOG_LEVEL?.trim().toLowerCase();
  return LOG_LEVELS.find((l) => l === asked) ?? 'error';
}
