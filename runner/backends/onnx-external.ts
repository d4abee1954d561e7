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
import { eachBytes, lastBytes, lastInt, textOf } from './protobuf.js';

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
/** External tensors one model may have (a large model in one weights file has tens of thousands). */
export const MAX_EXTERNAL_REFS = 1 << 20;

export interface ExternalRef {
  /** The tensor's name. */
  tensor: string;
  /** `location` exactly as the model writes it ('' when missing). */
  location: string;
}

/**
 * Every external-data reference in a serialized ModelProto, in the order found. The walk visits
 * fields in place (protobuf.ts forEachField): memory stays flat however many fields the model has.
 */
export function externalDataRefs(model: Uint8Array): ExternalRef[] {
  const refs: ExternalRef[] = [];
  const tensor = (m: Uint8Array) => {
    const loc = lastInt(m, F.tensor.dataLocation, 'TensorProto');
    let entries = 0;
    let location = '';
    eachBytes(m, F.tensor.externalData, 'TensorProto', (e) => {
      entries++;
      const k = lastBytes(e, F.entry.key, 'StringStringEntryProto');
      const v = lastBytes(e, F.entry.value, 'StringStringEntryProto');
      if (k && textOf(k) === 'location') location = v ? textOf(v) : '';
    });
    if (!entries && loc !== EXTERNAL) return;
    if (refs.length >= MAX_EXTERNAL_REFS)
      throw new Error(`more than ${MAX_EXTERNAL_REFS} tensors keep their data outside`);
    const name = lastBytes(m, F.tensor.name, 'TensorProto');
    refs.push({ tensor: name ? textOf(name) : '', location });
  };
  const sparse = (m: Uint8Array) => {
    eachBytes(m, F.sparse.values, 'SparseTensorProto', tensor);
    eachBytes(m, F.sparse.indices, 'SparseTensorProto', tensor);
  };
  const attribute = (m: Uint8Array, depth: number) => {
    eachBytes(m, F.attribute.t, 'AttributeProto', tensor);
    eachBytes(m, F.attribute.tensors, 'AttributeProto', tensor);
    eachBytes(m, F.attribute.sparseTensor, 'AttributeProto', sparse);
    eachBytes(m, F.attribute.sparseTensors, 'AttributeProto', sparse);
    eachBytes(m, F.attribute.g, 'AttributeProto', (g) => graph(g, depth + 1));
    eachBytes(m, F.attribute.graphs, 'AttributeProto', (g) => graph(g, depth + 1));
  };
  const nodes = (m: Uint8Array, no: number, what: string, depth: number) =>
    eachBytes(m, no, what, (n) => eachBytes(n, F.node.attribute, 'NodeProto', (a) => attribute(a, depth)));
  const graph = (m: Uint8Array, depth: number) => {
    if (depth > MAX_DEPTH) throw new Error(`sub-graphs nest deeper than ${MAX_DEPTH}`);
    eachBytes(m, F.graph.initializer, 'GraphProto', tensor);
    eachBytes(m, F.graph.sparseInitializer, 'GraphProto', sparse);
    nodes(m, F.graph.node, 'GraphProto', depth);
  };
  // Plain Uint8Array views: a Buffer's subarray() costs several times more, per field.
  const top = new Uint8Array(model.buffer, model.byteOffset, model.byteLength);
  eachBytes(top, F.model.graph, 'ModelProto', (g) => graph(g, 0));
  eachBytes(top, F.model.trainingInfo, 'ModelProto', (t) => {
    eachBytes(t, F.training.initialization, 'TrainingInfoProto', (g) => graph(g, 0));
    eachBytes(t, F.training.algorithm, 'TrainingInfoProto', (g) => graph(g, 0));
  });
  eachBytes(top, F.model.functions, 'ModelProto', (fn) => {
    nodes(fn, F.fn.node, 'FunctionProto', 0);
    eachBytes(fn, F.fn.attributeProto, 'FunctionProto', (a) => attribute(a, 0));
  });
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
