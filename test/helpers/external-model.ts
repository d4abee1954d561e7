/** A tiny ONNX model whose weights live in an external data file, written with the fixtures' codec. */
import {
  decodeMessage,
  encodeMessage,
  fieldsOf,
  messageField,
  replaceFields,
  stringField,
  sub,
  varintField,
} from '../../fixtures/onnx-proto.js';
import { encodeModel } from '../../fixtures/onnx-tiny.js';

/**
 * Y = X + W, float32 [4], with W's 16 bytes kept outside the model at `location` (from `offset`),
 * the way onnx's save_model(..., save_as_external_data=True) writes it.
 */
export function externalAddModel(location: string, offset = 0): Buffer {
  const plain = encodeModel({
    name: 'add_external',
    nodes: [{ op: 'Add', inputs: ['X', 'W'], outputs: ['Y'] }],
    inputs: [{ name: 'X', type: 'float32', shape: [4] }],
    outputs: [{ name: 'Y', type: 'float32', shape: [4] }],
    initializers: [{ name: 'W', type: 'float32', dims: [4], raw: new Uint8Array(16) }],
  });
  const entry = (k: string, v: string) => messageField(13, [stringField(1, k), stringField(2, v)]);
  // TensorProto: dims=1, data_type=2, name=8, external_data=13, data_location=14 (EXTERNAL = 1)
  const w = [
    varintField(1, 4),
    varintField(2, 1),
    stringField(8, 'W'),
    entry('location', location),
    entry('offset', String(offset)),
    entry('length', '16'),
    varintField(14, 1),
  ];
  const model = decodeMessage(plain);
  const graph = sub(fieldsOf(model, 7)[0]);
  const out = encodeMessage(replaceFields(model, 7, [messageField(7, replaceFields(graph, 5, [messageField(5, w)]))]));
  return Buffer.from(out.buffer, out.byteOffset, out.length);
}
