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
