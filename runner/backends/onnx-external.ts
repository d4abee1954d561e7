/**
 * External data of an ONNX model: every TensorProto whose bytes live in another file names that
 * file in `external_data` (`location`, relative to the model file). onnxruntime resolves such a
 * location against the model's folder, or against the current working directory when the model
 * came as bytes, so the runner must know every location before a session is created: each must be
 * one of the variant's own (verified) files, and nothing else.
 *
 * The scan walks every place onnx.proto allows a tensor (graph initializers, sparse initializers,
 * node attributes, sub-graphs, functions, training info) over views of the model bytes: `raw_data`
 * is skipped, never copied.
 */
import { posix } from 'node:path';
import { RunnerError } from '../../spec/errors.js';
import { decodeMessage, fieldsOf, intOf, lastOf, type Message, stringOf, sub } from './protobuf.js';

/** onnx.proto field numbers of the messages that can hold tensors. */
const F = {
  model: { graph: 7, trainingInfo: 20, functions: 25 },
  training: { initialization: 1, algorithm: 2 },
  fn: { node: 7, attributeProto: 11 },
  graph: { node: 1, initializer: 5, sparseInitializer: 15 },
  node: { attribute: 5 },
  attribute: { t: 5, g: 6, tensors: 10, graphs: 11, sparseTensor: 22, sparseTensors: 23 },
  sparse: { values: 1, indices: 2 },
  tensor: { name: 8, externalData: 13, dataLocation: 14 },
  entry: { key: 1, value: 2 },
} as const;

/** TensorProto.DataLocation.EXTERNAL */
const EXTERNAL = 1;
/** Sub-graphs nest (If inside Loop inside If…); real models stay far below this. */
const MAX_DEPTH = 64;

export interface ExternalRef {
  /** The tensor's name. */
  tensor: string;
  /** `location` exactly as the model writes it ('' when missing). */
  location: string;
}

/** Every external-data reference in a serialized ModelProto, in the order found. */
export function externalDataRefs(model: Uint8Array): ExternalRef[] {
  const refs: ExternalRef[] = [];
  const tensor = (m: Message) => {
    const loc = lastOf(m, F.tensor.dataLocation);
    const entries = fieldsOf(m, F.tensor.externalData);
    if (!entries.length && !(loc && intOf(loc, 'TensorProto') === EXTERNAL)) return;
    let location = '';
    for (const e of entries) {
      const kv = sub(e, 'StringStringEntryProto');
      const k = lastOf(kv, F.entry.key);
      const v = lastOf(kv, F.entry.value);
      if (k && stringOf(k) === 'location') location = v ? stringOf(v) : '';
    }
    const name = lastOf(m, F.tensor.name);
    refs.push({ tensor: name ? stringOf(name) : '', location });
  };
  const sparse = (m: Message) => {
    for (const f of [...fieldsOf(m, F.sparse.values), ...fieldsOf(m, F.sparse.indices)]) tensor(sub(f, 'TensorProto'));
  };
  const attribute = (m: Message, depth: number) => {
    for (const f of [...fieldsOf(m, F.attribute.t), ...fieldsOf(m, F.attribute.tensors)]) tensor(sub(f, 'TensorProto'));
    for (const f of [...fieldsOf(m, F.attribute.sparseTensor), ...fieldsOf(m, F.attribute.sparseTensors)])
      sparse(sub(f, 'SparseTensorProto'));
    for (const f of [...fieldsOf(m, F.attribute.g), ...fieldsOf(m, F.attribute.graphs)])
      graph(sub(f, 'GraphProto'), depth + 1);
  };
  const nodes = (fields: Message, depth: number) => {
    for (const n of fields)
      for (const a of fieldsOf(sub(n, 'NodeProto'), F.node.attribute)) attribute(sub(a, 'AttributeProto'), depth);
  };
  const graph = (m: Message, depth: number) => {
    if (depth > MAX_DEPTH) throw new Error(`sub-graphs nest deeper than ${MAX_DEPTH}`);
    for (const f of fieldsOf(m, F.graph.initializer)) tensor(sub(f, 'TensorProto'));
    for (const f of fieldsOf(m, F.graph.sparseInitializer)) sparse(sub(f, 'SparseTensorProto'));
    nodes(fieldsOf(m, F.graph.node), depth);
  };
  // Plain Uint8Array views: a Buffer's subarray() costs several times more, per field.
  const top = decodeMessage(new Uint8Array(model.buffer, model.byteOffset, model.byteLength), 'ModelProto');
  for (const f of fieldsOf(top, F.model.graph)) graph(sub(f, 'GraphProto'), 0);
  for (const f of fieldsOf(top, F.model.trainingInfo)) {
    const t = sub(f, 'TrainingInfoProto');
    for (const g of [...fieldsOf(t, F.training.initialization), ...fieldsOf(t, F.training.algorithm)])
      graph(sub(g, 'GraphProto'), 0);
  }
  for (const f of fieldsOf(top, F.model.functions)) {
    const fn = sub(f, 'FunctionProto');
    nodes(fieldsOf(fn, F.fn.node), 0);
    for (const a of fieldsOf(fn, F.fn.attributeProto)) attribute(sub(a, 'AttributeProto'), 0);
  }
  return refs;
}

/**
 * The package paths a model's external data needs, checked: a location must be a plain relative
 * path (not absolute, no `..`, no backslash, not onnxruntime's in-memory address tag) that names one
 * of `files` other than the entry itself, resolved against the entry's folder. Anything else is
 * E_RUN_MODEL_EXTERNAL: onnxruntime would read bytes the runner did not verify.
 */
export function externalFiles(variantId: string, entry: string, files: readonly string[], model: Uint8Array): string[] {
  let refs: ExternalRef[];
  try {
    refs = externalDataRefs(model);
  } catch (e) {
    throw new RunnerError(
      'E_RUN_LOAD',
      `onnxruntime could not load variant ${variantId} (${entry}): not a readable ONNX model: ${(e as Error).message}`,
      { variant: variantId, file: entry },
      { cause: e },
    );
  }
  const needed = new Set<string>();
  for (const { tensor, location } of refs) {
    const refuse = (why: string): never => {
      throw new RunnerError(
        'E_RUN_MODEL_EXTERNAL',
        `variant ${variantId}: tensor ${JSON.stringify(tensor)} of ${entry} keeps its data in ${JSON.stringify(location)}, which ${why}`,
        { variant: variantId, file: entry, tensor, location },
      );
    };
    if (!location) refuse('is empty');
    if (location.includes('\\') || location.includes('\0') || posix.isAbsolute(location) || /^[A-Za-z]:/.test(location))
      refuse('is not a relative path');
    if (location.split('/').includes('..')) refuse('leaves the model folder');
    const path = posix.join(posix.dirname(entry), location);
    if (path === entry || !files.includes(path))
      refuse(`is not one of the variant's files (${files.filter((f) => f !== entry).join(', ') || 'none'})`);
    needed.add(path);
  }
  return [...needed];
}
