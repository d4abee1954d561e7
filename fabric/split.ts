/**
 * Cuts an ONNX model at named tensors into a head (graph inputs → cut tensors) and a tail (cut
 * tensors → graph outputs), each a valid model, with the project's ONNX codec (runner/backends/
 * onnx-graph.ts). A cut must separate the graph: the tail may read nothing of the whole model's inputs
 * except through the cut tensors, and needs every cut tensor. Extra head outputs (`headOutputs`,
 * e.g. a cheap confidence score for an offload condition) are computed in the head as well.
 *
 * The models carry no value_info, so the cut tensors' element types come from a small forward
 * propagation over the nodes (Cast's `to`, integer/boolean-producing ops, else the first typed input);
 * shapes are declared when given (`shapes`), else left open for onnxruntime to infer. `checkSplit` (fabric/split-check.ts) verifies
 * head∘tail against the whole.
 */
import { attrOf, DT, type GNode, OnnxGraph, valueInfo } from '../runner/backends/onnx-graph.js';
import { readTensor } from '../runner/backends/onnx-proto.js';
import { FabricError } from '../spec/errors.js';

export interface CutOptions {
  /** The cut tensors, by name: they become the head's outputs and the tail's inputs. */
  at: string[];
  /** Further tensors the head computes and returns (not read by the tail). */
  headOutputs?: string[];
  /**
   * Shapes to declare for cut tensors (and head outputs), e.g. those a check observed; a tensor left
   * out is declared without a shape. A peer checks what it is sent against the tail's declared shapes.
   */
  shapes?: Record<string, number[]>;
}

export interface CutTensor {
  name: string;
  /** ONNX TensorProto data type (1 float, 10 float16, 7 int64, …). */
  elemType: number;
}

export interface Cut {
  head: Uint8Array;
  tail: Uint8Array;
  /** The cut tensors (tail inputs), in the order given. */
  at: CutTensor[];
  nodes: { whole: number; head: number; tail: number; both: number };
}

const INT64_OUT = new Set(['Shape', 'Size', 'ArgMax', 'ArgMin', 'NonZero', 'NonMaxSuppression']);
const BOOL_OUT = new Set([
  'Equal',
  'Less',
  'Greater',
  'LessOrEqual',
  'GreaterOrEqual',
  'Not',
  'And',
  'Or',
  'Xor',
  'IsNaN',
  'IsInf',
]);

function splitError(message: string, detail?: Record<string, unknown>): FabricError {
  return new FabricError('E_FABRIC_SPLIT', message, detail);
}

/** Element type of every value the graph makes (0 where it cannot tell). */
function elemTypes(g: OnnxGraph): Map<string, number> {
  const t = new Map<string, number>();
  for (const v of g.inputs) t.set(v.name, v.elemType);
  for (const i of g.inits.values()) t.set(i.name, i.dataType);
  for (const n of g.nodes) {
    let e = 0;
    if (n.opType === 'Cast') e = attrOf(n, 'to')?.i ?? 0;
    else if (n.opType === 'Constant') {
      const v = attrOf(n, 'value');
      e = v?.t ? readTensor(v.t).dataType : 0;
    } else if (INT64_OUT.has(n.opType)) e = DT.INT64;
    else if (BOOL_OUT.has(n.opType)) e = DT.BOOL;
    else if (n.opType === 'DequantizeLinear') e = DT.FLOAT;
    else if (n.opType === 'QuantizeLinear') e = (n.input[2] && t.get(n.input[2])) || DT.UINT8;
    else e = n.input.map((s) => t.get(s) ?? 0).find((x) => x) ?? 0;
    n.output.forEach((o, k) => {
      // TopK's second output is the indices
      t.set(o, n.opType === 'TopK' && k === 1 ? DT.INT64 : e);
    });
  }
  return t;
}

/** Indices of the nodes needed to compute `targets`, not looking past the names in `stop`. */
function closure(g: OnnxGraph, targets: string[], stop: Set<string>): { nodes: Set<number>; reads: Set<string> } {
  const producer = new Map<string, number>();
  g.nodes.forEach((n, i) => {
    for (const o of n.output) producer.set(o, i);
  });
  const nodes = new Set<number>();
  const reads = new Set<string>();
  const todo = [...targets];
  while (todo.length) {
    const name = todo.pop()!;
    if (!name || stop.has(name)) {
      if (name) reads.add(name);
      continue;
    }
    const i = producer.get(name);
    if (i === undefined) {
      reads.add(name); // a graph input or an initializer
      continue;
    }
    if (nodes.has(i)) continue;
    nodes.add(i);
    todo.push(...g.nodes[i].input);
  }
  return { nodes, reads };
}

/** A copy of the decoded model with the given nodes (in their order), inputs and outputs. */
function part(
  bytes: Uint8Array,
  keep: Set<number>,
  inputs: CutTensor[] | null,
  outputs: CutTensor[] | null,
  shapes: Record<string, number[]>,
) {
  const g = OnnxGraph.decode(bytes);
  const wholeInputs = new Map(g.inputs.map((v) => [v.name, v]));
  // a tensor may be named like an Object.prototype member (`constructor`): only shapes given count
  const value = (c: CutTensor) =>
    valueInfo(c.name, c.elemType, Object.hasOwn(shapes, c.name) ? shapes[c.name] : undefined);
  g.nodes = g.nodes.filter((_n, i) => keep.has(i));
  if (inputs) g.inputs = inputs.map((c) => wholeInputs.get(c.name) ?? value(c));
  if (outputs) g.outputs = outputs.map(value);
  return g;
}

export function cutModel(bytes: Uint8Array, o: CutOptions): Cut {
  let g: OnnxGraph;
  try {
    g = OnnxGraph.decode(bytes);
  } catch (e) {
    throw splitError(`not an ONNX model this tool can cut: ${(e as Error).message}`);
  }
  const at = [...new Set(o.at)];
  const extra = [...new Set(o.headOutputs ?? [])].filter((n) => !at.includes(n));
  if (!at.length) throw splitError('name at least one tensor to cut at');
  const made = new Set(g.nodes.flatMap((n: GNode) => n.output));
  const inputNames = new Set(g.inputs.map((v) => v.name));
  for (const name of [...at, ...extra]) {
    if (!made.has(name))
      throw splitError(
        inputNames.has(name) || g.inits.has(name)
          ? `${JSON.stringify(name)} is a graph input or a weight, not a tensor a node computes`
          : `the model has no tensor named ${JSON.stringify(name)}`,
        { tensor: name },
      );
  }
  const outputs = g.outputs.map((v) => v.name);
  if (at.some((n) => outputs.includes(n)))
    throw splitError('a cut tensor is one of the model outputs: the tail would have nothing to do', { at });
  const stop = new Set(at);
  const tail = closure(g, outputs, stop);
  const leaks = [...tail.reads].filter((n) => inputNames.has(n));
  if (leaks.length)
    throw splitError(
      `the cut does not separate the graph: the tail still reads the model input(s) ${leaks.join(', ')}`,
      {
        at,
        inputs: leaks,
      },
    );
  const unused = at.filter((n) => !tail.reads.has(n));
  if (unused.length) throw splitError(`the tail does not need the cut tensor(s) ${unused.join(', ')}`, { at, unused });
  const head = closure(g, [...at, ...extra], new Set());
  let types: Map<string, number>;
  try {
    types = elemTypes(g); // reads Constant nodes' tensors, which the decode above left as bytes
  } catch (e) {
    throw splitError(`not an ONNX model this tool can cut: ${(e as Error).message}`);
  }
  const typed = (name: string): CutTensor => {
    const elemType = types.get(name) ?? 0;
    if (!elemType) throw splitError(`cannot tell the element type of ${JSON.stringify(name)}`, { tensor: name });
    return { name, elemType };
  };
  const cut = at.map(typed);
  const shapes = o.shapes ?? {};
  const headModel = part(bytes, head.nodes, null, [...cut, ...extra.map(typed)], shapes);
  const tailModel = part(bytes, tail.nodes, cut, null, shapes);
  let both = 0;
  for (const i of head.nodes) if (tail.nodes.has(i)) both++;
  return {
    head: headModel.encode(),
    tail: tailModel.encode(),
    at: cut,
    nodes: { whole: g.nodes.length, head: head.nodes.size, tail: tail.nodes.size, both },
  };
}
