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
