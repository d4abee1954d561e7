/**
 * The model execution providers are probed with: ONNX `Y = Identity(X)`, float32 [N], opset 13.
 * These are the exact bytes fixtures/onnx-tiny.ts `identityModel()` encodes (a test checks it), kept
 * here as a constant so the runner does not depend on the fixtures folder.
 */
export const PROBE_MODEL_HEX =
  '0807120d78706b672d66697874757265733a440a140a01581201591a026e3022084964656e7469747912086964656e746974795a100a0158120b0a09080112050a0312014e62100a0159120b0a09080112050a0312014e42040a00100d';

export function probeModel(): Buffer {
  return Buffer.from(PROBE_MODEL_HEX, 'hex');
}

/**
 * A GPU provider's once-per-process set-up is started with: `Y = Conv(X, W)`, `Z = MatMul(A, B)`,
 * float32, all inputs (fixtures/onnx-tiny.ts `convMatMulModel()`, checked by a test). Its first run
 * loads the provider's convolution and matrix libraries (cuDNN, cuBLAS) and creates the device context.
 */
export const GPU_WARM_MODEL_HEX =
  '0807120d78706b672d66697874757265733acf010a130a01580a01571201591a026e302204436f6e760a150a01410a014212015a1a026e3122064d61744d756c120b636f6e762d6d61746d756c5a1b0a015812160a14080112100a0208010a0208010a0208080a0208085a1b0a015712160a14080112100a0208010a0208010a0208030a0208035a130a0141120e0a0c080112080a0208080a0208085a130a0142120e0a0c080112080a0208080a020808621b0a015912160a14080112100a0208010a0208010a0208060a02080662130a015a120e0a0c080112080a0208080a02080842040a00100d';

export function gpuWarmModel(): Buffer {
  return Buffer.from(GPU_WARM_MODEL_HEX, 'hex');
}

/** The dims of gpuWarmModel()'s inputs (it runs on zeros). */
export const GPU_WARM_DIMS: Record<string, number[]> = { X: [1, 1, 8, 8], W: [1, 1, 3, 3], A: [8, 8], B: [8, 8] };
