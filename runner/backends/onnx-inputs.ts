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
import { decodeMessage, fieldsOf, lastOf, stringOf, sub } from './protobuf.js';

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

/** True when every graph input (initializers aside) is a tensor of known rank with only fixed dims. */
export function hasStaticInputs(model: Uint8Array): boolean {
  try {
    const graphField = lastOf(decodeMessage(model, 'ModelProto'), F.model.graph);
    if (!graphField) return false;
    const graph = sub(graphField, 'GraphProto');
    // IR < 4 lists initializers among the inputs; they are not fed, so their shapes do not matter
    const initializers = new Set(
      fieldsOf(graph, F.graph.initializer).map((f) => {
        const n = lastOf(sub(f, 'TensorProto'), F.tensor.name);
        return n ? stringOf(n) : '';
      }),
    );
    for (const f of fieldsOf(graph, F.graph.input)) {
      const info = sub(f, 'ValueInfoProto');
      const name = lastOf(info, F.valueInfo.name);
      if (name && initializers.has(stringOf(name))) continue;
      const type = lastOf(info, F.valueInfo.type);
      const tensor = type && lastOf(sub(type, 'TypeProto'), F.type.tensor);
      const shape = tensor && lastOf(sub(tensor, 'TypeProto.Tensor'), F.tensorType.shape);
      if (!shape) return false;
      for (const d of fieldsOf(sub(shape, 'TensorShapeProto'), F.shape.dim)) {
        if (!lastOf(sub(d, 'Dimension'), F.dim.value)) return false;
      }
    }
    return true;
  } catch {
    // unreadable here: onnxruntime will say why; plan as for dynamic shapes meanwhile
    return false;
  }
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
    const graphField = lastOf(decodeMessage(model, 'ModelProto'), F.model.graph);
    if (!graphField) return ['?'];
    const found = new Set<string>();
    for (const f of fieldsOf(sub(graphField, 'GraphProto'), F.graph.node)) {
      const op = lastOf(sub(f, 'NodeProto'), F.node.opType);
      const name = op ? stringOf(op) : '';
      if (DATA_SHAPED.has(name)) found.add(name);
    }
    return [...found];
  } catch {
    return ['?'];
  }
}
