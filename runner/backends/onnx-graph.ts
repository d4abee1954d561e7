/**
 * A small editable view of an ONNX model for build-time graph surgery (fp16 conversion, pre/post
 * nodes merged into a model): nodes, initializers, inputs and outputs as plain records over the
 * wire-format codec of onnx-proto.ts. `encode()` writes them back; every other field of the model
 * and graph is re-emitted as it was, except `value_info`, which edits make stale (onnxruntime
 * infers shapes itself).
 */
import {
  ATTR,
  type AttributeView,
  bytesField,
  decodeMessage,
  encodeMessage,
  FLOAT,
  fieldsOf,
  floatAttribute,
  intOf,
  lastOf,
  type Message,
  messageField,
  ONNX,
  opsetVersion,
  readAttribute,
  readNode,
  readTensor,
  replaceFields,
  stringField,
  stringOf,
  sub,
  varintField,
} from './onnx-proto.js';

/** TensorProto.DataType values used by the graph edits. */
export const DT = { FLOAT, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10 } as const;

export interface GNode {
  input: string[];
  output: string[];
  opType: string;
  domain: string;
  name: string;
  /** AttributeProto messages, re-emitted as they are. */
  attrs: Message[];
}

export interface GInit {
  name: string;
  dataType: number;
  dims: number[];
  /** The TensorProto. */
  msg: Message;
}

export interface GValue {
  name: string;
  elemType: number;
  /** Numbers are fixed dims, strings symbolic ones; undefined when the value info has no shape. */
  shape?: (number | string)[];
  msg: Message;
}

const G = ONNX.graph;

function readValue(m: Message): GValue {
  const name = lastOf(m, ONNX.valueInfo.name);
  const type = lastOf(m, ONNX.valueInfo.type);
  let elemType = 0;
  let shape: (number | string)[] | undefined;
  const tensor = type ? lastOf(sub(type, 'TypeProto'), 1) : undefined;
  if (tensor) {
    const t = sub(tensor, 'TypeProto.Tensor');
    const e = lastOf(t, 1);
    if (e) elemType = intOf(e, 'TypeProto.Tensor');
    const s = lastOf(t, 2);
    if (s)
      shape = fieldsOf(sub(s, 'TensorShapeProto'), 1).map((d) => {
        const dim = sub(d, 'Dimension');
        const v = lastOf(dim, 1);
        const p = lastOf(dim, 2);
        return v ? intOf(v, 'Dimension') : p ? stringOf(p, 'Dimension') : '?';
      });
  }
  return { name: name ? stringOf(name, 'ValueInfoProto') : '', elemType, ...(shape ? { shape } : {}), msg: m };
}

/** A tensor ValueInfoProto. */
export function valueInfo(name: string, elemType: number, shape?: (number | string)[]): GValue {
  const dims = (shape ?? []).map((d) =>
    messageField(1, [typeof d === 'number' ? varintField(1, d) : stringField(2, d)]),
  );
  const tensorType = [varintField(1, elemType), ...(shape ? [messageField(2, dims)] : [])];
  const msg = [
    stringField(ONNX.valueInfo.name, name),
    messageField(ONNX.valueInfo.type, [messageField(1, tensorType)]),
  ];
  return { name, elemType, ...(shape ? { shape } : {}), msg };
}

/** A TensorProto with little-endian raw_data. */
export function tensorInit(name: string, dataType: number, dims: number[], raw: Uint8Array): GInit {
  const T = ONNX.tensor;
  const msg = [
    ...dims.map((d) => varintField(T.dims, d)),
    varintField(T.dataType, dataType),
    stringField(T.name, name),
    bytesField(T.rawData, raw),
  ];
  return { name, dataType, dims, msg };
}

const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
export const f32Init = (name: string, dims: number[], v: number[] | Float32Array) =>
  tensorInit(name, DT.FLOAT, dims, bytes(Float32Array.from(v)));
export const i64Init = (name: string, dims: number[], v: number[]) =>
  tensorInit(name, DT.INT64, dims, bytes(BigInt64Array.from(v, BigInt)));
export const u8Init = (name: string, dims: number[], v: number[]) =>
  tensorInit(name, DT.UINT8, dims, Uint8Array.from(v));

export function intAttr(name: string, i: number): Message {
  const A = ONNX.attribute;
  return [stringField(A.name, name), varintField(A.i, i), varintField(A.type, ATTR.INT)];
}

export function intsAttr(name: string, ints: number[]): Message {
  const A = ONNX.attribute;
  return [stringField(A.name, name), ...ints.map((i) => varintField(A.ints, i)), varintField(A.type, ATTR.INTS)];
}

export const floatAttr = floatAttribute;

export function stringAttr(name: string, s: string): Message {
  const A = ONNX.attribute;
  return [stringField(A.name, name), stringField(A.s, s), varintField(A.type, ATTR.STRING)];
}

export function attrOf(n: GNode, name: string): AttributeView | undefined {
  for (const a of n.attrs) {
    const v = readAttribute(a);
    if (v.name === name) return v;
  }
  return undefined;
}

export class OnnxGraph {
  nodes: GNode[];
  inits: Map<string, GInit>;
  inputs: GValue[];
  outputs: GValue[];
  readonly opset: number;
  readonly #model: Message;
  readonly #graph: Message;
  readonly #names = new Set<string>();

  private constructor(model: Message, graph: Message) {
    this.#model = model;
    this.#graph = graph;
    this.opset = opsetVersion(model) ?? 1;
    this.nodes = fieldsOf(graph, G.node).map((f) => {
      const v = readNode(sub(f, 'NodeProto'));
      return {
        input: v.input,
        output: v.output,
        opType: v.opType,
        domain: v.domain,
        name: v.name,
        attrs: v.attributes,
      };
    });
    this.inits = new Map(
      fieldsOf(graph, G.initializer).map((f) => {
        const msg = sub(f, 'TensorProto');
        const t = readTensor(msg);
        return [t.name, { name: t.name, dataType: t.dataType, dims: t.dims, msg }];
      }),
    );
    this.inputs = fieldsOf(graph, G.input).map((f) => readValue(sub(f, 'ValueInfoProto')));
    // IR 3 and older list the initializers among the inputs, typed; edits that retype weights
    // would have to follow them there.
    if (this.inputs.some((v) => this.inits.has(v.name)))
      throw new Error('models that list initializers among their inputs (IR version 3 and older) are not supported');
    this.outputs = fieldsOf(graph, G.output).map((f) => readValue(sub(f, 'ValueInfoProto')));
    for (const n of this.nodes) {
      if (n.attrs.some((a) => readAttribute(a).graphs.length))
        throw new Error(`node ${n.name || n.opType}: sub-graphs (If/Loop/Scan) are not supported by these edits`);
      for (const s of [...n.input, ...n.output]) this.#names.add(s);
    }
    for (const s of [...this.inits.keys(), ...this.inputs.map((v) => v.name)]) this.#names.add(s);
  }

  static decode(model: Uint8Array): OnnxGraph {
    const M = decodeMessage(model, 'ModelProto');
    const graphs = fieldsOf(M, ONNX.model.graph);
    if (graphs.length !== 1) throw new Error(`ModelProto: expected one graph, found ${graphs.length}`);
    return new OnnxGraph(M, sub(graphs[0], 'GraphProto'));
  }

  /** A value name not used yet, from `base`. */
  unique(base: string): string {
    let name = base;
    for (let k = 1; this.#names.has(name); k++) name = `${base}.${k}`;
    this.#names.add(name);
    return name;
  }

  /** A node record (not yet in the graph). */
  node(opType: string, input: string[], output: string[], attrs: Message[] = []): GNode {
    for (const s of output) this.#names.add(s);
    return { input, output, opType, domain: '', name: '', attrs };
  }

  addInit(t: GInit): string {
    this.#names.add(t.name);
    this.inits.set(t.name, t);
    return t.name;
  }

  /** Constant nodes of the default domain become initializers named after their output. */
  constantsToInitializers(): void {
    this.nodes = this.nodes.filter((n) => {
      if (n.opType !== 'Constant' || (n.domain !== '' && n.domain !== 'ai.onnx') || n.attrs.length !== 1) return true;
      const value = readAttribute(n.attrs[0]);
      if (value.name !== 'value' || value.type !== ATTR.TENSOR || !value.t) return true;
      const t = readTensor(value.t);
      const msg = replaceFields(value.t, ONNX.tensor.name, [stringField(ONNX.tensor.name, n.output[0])]);
      this.inits.set(n.output[0], { name: n.output[0], dataType: t.dataType, dims: t.dims, msg });
      return false;
    });
  }

  /** The nodes reading `name`. */
  consumers(name: string): GNode[] {
    return this.nodes.filter((n) => n.input.includes(name));
  }

  producer(name: string): GNode | undefined {
    return this.nodes.find((n) => n.output.includes(name));
  }

  encode(): Uint8Array {
    const N = ONNX.node;
    const nodeFields = this.nodes.map((n) =>
      messageField(G.node, [
        ...n.input.map((s) => stringField(N.input, s)),
        ...n.output.map((s) => stringField(N.output, s)),
        ...(n.name ? [stringField(N.name, n.name)] : []),
        stringField(N.opType, n.opType),
        ...n.attrs.map((a) => messageField(N.attribute, a)),
        ...(n.domain ? [stringField(N.domain, n.domain)] : []),
      ]),
    );
    const used = new Set([...this.nodes.flatMap((n) => n.input), ...this.outputs.map((o) => o.name)]);
    const initFields = [...this.inits.values()]
      .filter((t) => used.has(t.name))
      .map((t) => messageField(G.initializer, t.msg));
    let g: Message = this.#graph.filter((f) => f.no !== G.valueInfo);
    g = replaceFields(g, G.node, nodeFields);
    g = replaceFields(g, G.initializer, initFields);
    g = replaceFields(
      g,
      G.input,
      this.inputs.map((v) => messageField(G.input, v.msg)),
    );
    g = replaceFields(
      g,
      G.output,
      this.outputs.map((v) => messageField(G.output, v.msg)),
    );
    return encodeMessage(replaceFields(this.#model, ONNX.model.graph, [messageField(ONNX.model.graph, g)]));
  }
}
