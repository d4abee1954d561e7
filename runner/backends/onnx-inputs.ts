/**
 * What xpkg reads of an ONNX model's graph before creating sessions: whether every input has a fixed
 * shape (memory pattern), and which ops make output shapes depend on the data (CUDA graphs).
 *
 * Fixed inputs, read from the graph's declared inputs.
 *
 * Why: onnxruntime's memory pattern plans a run's allocations from the shapes of the run before;
 * it pays only when shapes repeat. With a dynamic dimension (a text line's width, a page's size)
 * the plan is rebuilt at each new shape and its recording run costs ~60% more (PP-OCRv4 recogniser
 * at one width: 77 ms on the run that records it vs 48 without the pattern, equal after), so the
 * pattern is on only for fixed-shape models.
 */
import { eachBytes, forEachField, lastBytes, textOf } from './protobuf.js';

/** onnx.proto: ModelProto.graph, GraphProto.input/initializer, ValueInfoProto.type, TypeProto… */
const F = {
  model: { graph: 7 },
  graph: { node: 1, input: 11, initializer: 5 },
  node: { opType: 4 },
  valueInfo: { name: 1, type: 2 },
  type: { tensor: 1 },
  tensorType: { shape: 2 },
  shape: { dim: 1 },
  dim: { value: 1 },
  tensor: { name: 8 },
} as const;

/**
 * True when every graph input (initializers aside) is a tensor of known rank with only fixed dims.
 * Fields are visited in place (protobuf.ts forEachField): memory stays flat whatever the model holds.
 */
export function hasStaticInputs(model: Uint8Array): boolean {
  try {
    const graph = lastBytes(model, F.model.graph, 'ModelProto');
    if (!graph) return false;
    // IR < 4 lists initializers among the inputs; they are not fed, so their shapes do not matter
    const initializers = new Set<string>();
    eachBytes(graph, F.graph.initializer, 'GraphProto', (t) => {
      const n = lastBytes(t, F.tensor.name, 'TensorProto');
      initializers.add(n ? textOf(n) : '');
    });
    let fixed = true;
    eachBytes(graph, F.graph.input, 'GraphProto', (info) => {
      if (!fixed) return;
      const name = lastBytes(info, F.valueInfo.name, 'ValueInfoProto');
      if (name && initializers.has(textOf(name))) return;
      const type = lastBytes(info, F.valueInfo.type, 'ValueInfoProto');
      const tensor = type && lastBytes(type, F.type.tensor, 'TypeProto');
      const shape = tensor && lastBytes(tensor, F.tensorType.shape, 'TypeProto.Tensor');
      if (!shape) fixed = false;
      else
        eachBytes(shape, F.shape.dim, 'TensorShapeProto', (d) => {
          if (fixed && !hasField(d, F.dim.value, 'Dimension')) fixed = false;
        });
    });
    return fixed;
  } catch {
    // unreadable here: onnxruntime will say why; plan as for dynamic shapes meanwhile
    return false;
  }
}

/** Whether `buf` has a field `no` (of any wire type). */
function hasField(buf: Uint8Array, no: number, what: string): boolean {
  let found = false;
  forEachField(buf, what, (n) => {
    if (n === no) found = true;
  });
  return found;
}

/**
 * Ops whose output shapes follow the values, not the shapes, of their inputs (and control flow):
 * a CUDA graph replays the shapes of the run it captured, so a model holding any of them never
 * runs as one (its capture may even succeed and its replays then be wrong).
 */
const DATA_SHAPED = new Set(['NonZero', 'Compress', 'NonMaxSuppression', 'Unique', 'If', 'Loop', 'Scan']);

/** The data-shaped ops of the model's main graph (empty: its output shapes follow its input shapes); unreadable: ['?']. */
export function dataShapedOps(model: Uint8Array): string[] {
  try {
    const graph = lastBytes(model, F.model.graph, 'ModelProto');
    if (!graph) return ['?'];
    const found = new Set<string>();
    eachBytes(graph, F.graph.node, 'GraphProto', (n) => {
      const op = lastBytes(n, F.node.opType, 'NodeProto');
      const name = op ? textOf(op) : '';
      if (DATA_SHAPED.has(name)) found.add(name);
    });
    return [...found];
  } catch {
    return ['?'];
  }
}
