/**
 * Malformed ONNX model bytes: the protobuf wire reader (runner/backends/protobuf.ts, onnx-proto.ts)
 * and every place the library reads a model a package or a user hands it: the runner's external-data
 * scan (E_RUN_LOAD), its shape and data-shaped-op probes (which plan as for an unreadable model), and
 * `cutModel`/`xpkg split` (E_FABRIC_SPLIT). Never a crash, a hang, a stack overflow or an allocation
 * that the bytes alone decide.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cutModel } from '../fabric/split.js';
import { checkSamples, MAX_RANDOM_ELEMENTS, randomFeeds } from '../fabric/split-check.js';
import { decodeV2, encodeV2 } from '../fabric/v2-binary.js';
import { externalFiles, MAX_EXTERNAL_REFS } from '../runner/backends/onnx-external.js';
import { OnnxGraph, valueInfo } from '../runner/backends/onnx-graph.js';
import { dataShapedOps, hasStaticInputs } from '../runner/backends/onnx-inputs.js';
import {
  bytesField,
  decodeMessage,
  encodeMessage,
  encodeNode,
  type Message,
  messageField,
  stringField,
  varint,
  varintField,
} from '../runner/backends/onnx-proto.js';
import type { Tensor } from '../runner/types.js';
import { FabricError, RunnerError } from '../spec/errors.js';
import { syncCodeOf } from './helpers/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'xpkg-onnx-malformed-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const x = valueInfo('x', 1, [1, 4]);
const y = valueInfo('y', 1, [1, 4]);
const relu = (i: string, o: string) => encodeNode({ input: [i], output: [o], opType: 'Relu' });

/** A ModelProto (IR 8, opset 17) of these nodes, inputs and outputs. */
function model(nodes: Message[], inputs = [x], outputs = [y], extraGraph: Message = []): Uint8Array {
  const g = [
    ...nodes.map((n) => messageField(1, n)),
    stringField(2, 'g'),
    ...inputs.map((v) => messageField(11, v.msg)),
    ...outputs.map((v) => messageField(12, v.msg)),
    ...extraGraph,
  ];
  return encodeMessage([varintField(1, 8), messageField(7, g), messageField(8, [varintField(2, 17)])]);
}
const bytes = (...parts: (number[] | Uint8Array)[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
/** A length-delimited field `no` holding `body`, its length prefix as given. */
const lenField = (no: number, len: number[], body: number[] | Uint8Array = []) => bytes([(no << 3) | 2], len, body);

const good = model([relu('x', 'm'), relu('m', 'y')]);
const tenOnes = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

/** Malformed at the top of the ModelProto: every reader meets them. */
const topLevel: [string, Uint8Array][] = [
  ['a key varint cut short', bytes([0x08, 0x80])],
  ['a key varint cut short at the end', bytes(good, [0x80])],
  ['a value varint cut short', bytes([0x08, 0xff, 0xff])],
  ['a varint over 64 bits (10th byte > 1)', bytes([0x08], tenOnes, [0x7f])],
  ['a varint of 11 bytes', bytes([0x08], tenOnes, [0x80, 0x00])],
  ['a key of field number 0', bytes([0x02, 0x00])],
  ['a key over the largest field number', bytes([0x82, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00])],
  ['wire type 3 (start group)', bytes([0x0b])],
  ['wire type 4 (end group)', bytes([0x0c])],
  ['wire type 6', bytes([0x0e, 0x00])],
  ['wire type 7', bytes([0x0f, 0x00])],
  ['a fixed64 cut short', bytes([0x09, 1, 2, 3])],
  ['a fixed32 cut short', bytes([0x0d, 1])],
  ['a graph length past the end', lenField(7, [0x10], [1])],
  ['a graph length of 2^63', lenField(7, [...tenOnes.slice(0, 8), 0x7f])],
  ['a graph length of 2^64 - 1', lenField(7, [...tenOnes, 0x01])],
  ['a graph length prefix cut short', lenField(7, [0x80])],
  ['a graph that is a varint', bytes([0x38, 0x01])],
  ['a graph whose node is cut short', lenField(7, [3], [0x0a, 0x05, 0x0a])],
];

describe('the wire reader', () => {
  it.each(topLevel)('%s: refused', (_what, b) => {
    expect(() => OnnxGraph.decode(b)).toThrow(Error);
  });

  it('a well-formed model reads back (the cases differ from it)', () => {
    expect(OnnxGraph.decode(good).nodes.length).toBe(2);
    expect(hasStaticInputs(good)).toBe(true);
    expect(dataShapedOps(good)).toEqual([]);
    expect(externalFiles('v', 'model.onnx', ['model.onnx'], good)).toEqual([]);
  });

  it('a message of a million fields decodes in bounded time', () => {
    const many = new Uint8Array(2_000_000).fill(0).map((_v, i) => (i % 2 ? 0x00 : 0x08));
    const t0 = performance.now();
    expect(decodeMessage(many).length).toBe(1_000_000);
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});

describe('the runner reading a package model', () => {
  it.each(topLevel)(
    '%s: E_RUN_LOAD from the external-data scan; the probes plan as for an unreadable model',
    (_w, b) => {
      expect(syncCodeOf(() => externalFiles('v', 'model.onnx', ['model.onnx'], b), RunnerError)).toBe('E_RUN_LOAD');
      expect(hasStaticInputs(b)).toBe(false);
      expect(dataShapedOps(b)).toEqual(['?']);
    },
  );

  it('sub-graphs nested 5000 deep: E_RUN_LOAD, no stack overflow', () => {
    let g: Message = [];
    for (let i = 0; i < 5000; i++) {
      const a = [stringField(1, 'then_branch'), messageField(6, g), varintField(20, 5)];
      g = [messageField(1, encodeNode({ input: [], output: ['o'], opType: 'If', attributes: [a] }))];
    }
    const deep = encodeMessage([messageField(7, g)]);
    expect(syncCodeOf(() => externalFiles('v', 'model.onnx', ['model.onnx'], deep), RunnerError)).toBe('E_RUN_LOAD');
    expect(dataShapedOps(deep)).toEqual(['If']);
    expect(syncCodeOf(() => cutModel(deep, { at: ['o'] }), FabricError)).toBe('E_FABRIC_SPLIT');
  });

  it('tens of millions of empty nodes: the scans keep memory flat (a 128 MiB heap; was a fatal out-of-memory)', () => {
    // 12.5M empty NodeProto fields (25 MB): the scans held a ~200-byte record per field, ~2.5 GB
    const script = `
      const { externalDataRefs } = await import(${JSON.stringify(resolve('dist/runner/backends/onnx-external.js'))});
      const m = await import(${JSON.stringify(resolve('dist/runner/backends/onnx-inputs.js'))});
      const n = 12_500_000, g = new Uint8Array(2 * n);
      for (let i = 0; i < n; i++) g[2 * i] = 0x0a;
      const len = []; for (let v = g.length; ; ) { const b = v & 0x7f; v = Math.floor(v / 128); if (!v) { len.push(b); break; } len.push(b | 0x80); }
      const model = new Uint8Array(1 + len.length + g.length);
      model[0] = 0x3a; model.set(len, 1); model.set(g, 1 + len.length);
      console.log(JSON.stringify([externalDataRefs(model).length, m.hasStaticInputs(model), m.dataShapedOps(model)]));`;
    const r = spawnSync(process.execPath, ['--max-old-space-size=128', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.signal).toBeNull();
    expect(JSON.parse(r.stdout)).toEqual([0, true, []]);
  });

  it(`more external tensors than MAX_EXTERNAL_REFS: E_RUN_LOAD, not a list without bound`, () => {
    // an initializer whose data_location is EXTERNAL, 4 bytes each
    const graph = new Uint8Array(4 * (MAX_EXTERNAL_REFS + 1)).map((_v, i) => [0x2a, 0x02, 0x70, 0x01][i % 4]);
    const b = bytes([0x3a], varint(graph.length), graph);
    expect(syncCodeOf(() => externalFiles('v', 'model.onnx', ['model.onnx'], b), RunnerError)).toBe('E_RUN_LOAD');
  });

  it('a tensor whose external_data entry is malformed: E_RUN_LOAD', () => {
    const init = [stringField(8, 'W'), messageField(13, [varintField(1, 3)]), varintField(14, 1)];
    const b = model([relu('x', 'y')], [x], [y], [messageField(5, init)]);
    expect(syncCodeOf(() => externalFiles('v', 'model.onnx', ['model.onnx'], b), RunnerError)).toBe('E_RUN_LOAD');
  });

  it('a graph whose node is a varint: E_RUN_LOAD, E_FABRIC_SPLIT, and the op probe cannot tell', () => {
    const b = lenField(7, [2], [0x08, 0x01]);
    expect(syncCodeOf(() => externalFiles('v', 'model.onnx', ['model.onnx'], b), RunnerError)).toBe('E_RUN_LOAD');
    expect(dataShapedOps(b)).toEqual(['?']);
    expect(syncCodeOf(() => cutModel(b, { at: ['m'] }), FabricError)).toBe('E_FABRIC_SPLIT');
  });

  it('an input whose shape is a varint: the probe says not fixed', () => {
    const info = [stringField(1, 'x'), messageField(2, [messageField(1, [varintField(1, 1), varintField(2, 7)])])];
    const b = model([relu('x', 'y')], [{ ...x, msg: info }]);
    expect(hasStaticInputs(b)).toBe(false);
  });
});

describe('cutModel and its checks', () => {
  it.each(topLevel)('%s: E_FABRIC_SPLIT', (_what, b) => {
    expect(syncCodeOf(() => cutModel(b, { at: ['m'] }), FabricError)).toBe('E_FABRIC_SPLIT');
  });

  it('a Constant whose tensor is malformed: E_FABRIC_SPLIT (was a plain Error: E_INTERNAL)', () => {
    // data_type (field 2) as a string, where a varint belongs
    const bad = [stringField(1, 'value'), messageField(5, [stringField(2, 'float')]), varintField(20, 4)];
    const b = model([
      encodeNode({ input: [], output: ['c'], opType: 'Constant', attributes: [bad] }),
      encodeNode({ input: ['x', 'c'], output: ['m'], opType: 'Add' }),
      relu('m', 'y'),
    ]);
    expect(syncCodeOf(() => cutModel(b, { at: ['m'] }), FabricError)).toBe('E_FABRIC_SPLIT');
  });

  it('a Constant whose packed dims end in a truncated varint: E_FABRIC_SPLIT', () => {
    const t = [stringField(1, 'value'), messageField(5, [bytesField(1, [...varint(-1n), 0xff]), varintField(2, 1)])];
    const b = model([
      encodeNode({ input: [], output: ['c'], opType: 'Constant', attributes: [t] }),
      encodeNode({ input: ['x', 'c'], output: ['m'], opType: 'Add' }),
      relu('m', 'y'),
    ]);
    expect(syncCodeOf(() => cutModel(b, { at: ['m'] }), FabricError)).toBe('E_FABRIC_SPLIT');
  });

  it.each(['constructor', 'toString', '__proto__', 'hasOwnProperty'])(
    'a cut tensor named %s is cut like any other (was a TypeError: E_INTERNAL)',
    (name) => {
      const b = model([relu('x', name), relu(name, 'y')]);
      const cut = cutModel(b, { at: [name] });
      expect(cut.at).toEqual([{ name, elemType: 1 }]);
      expect(OnnxGraph.decode(cut.tail).inputs.map((v) => [v.name, v.shape])).toEqual([[name, undefined]]);
      const shaped = cutModel(b, { at: [name], shapes: Object.fromEntries([[name, [1, 4]]]) });
      expect(OnnxGraph.decode(shaped.tail).inputs[0].shape).toEqual([1, 4]);
    },
  );

  it('declared input shapes too large for random samples: E_FABRIC_SPLIT (was a RangeError, or gigabytes)', () => {
    for (const shape of [[100_000, 100_000], [2 ** 40], [MAX_RANDOM_ELEMENTS + 1], [2 ** 62, 2 ** 62]]) {
      const b = model([relu('x', 'm'), relu('m', 'y')], [valueInfo('x', 1, shape)]);
      expect(syncCodeOf(() => randomFeeds(b), FabricError)).toBe('E_FABRIC_SPLIT');
    }
    // negative and open dims are taken as 1
    const open = model([relu('x', 'm'), relu('m', 'y')], [valueInfo('x', 1, [-7, 'n', 4])]);
    expect(randomFeeds(open).x.dims).toEqual([1, 1, 4]);
  });

  it('an input named __proto__ gets its random feed; constructor needs a sample of its own', () => {
    const b = model([relu('__proto__', 'm'), relu('m', 'y')], [valueInfo('__proto__', 1, [1, 4])]);
    expect(Object.keys(randomFeeds(b))).toEqual(['__proto__']);
    const c = model([relu('constructor', 'm'), relu('m', 'y')], [valueInfo('constructor', 1, [1, 4])]);
    const feed: Tensor = { type: 'float32', dims: [1, 4], data: new Float32Array(4) };
    expect(syncCodeOf(() => checkSamples(c, [{ x: feed }]), FabricError)).toBe('E_FABRIC_SPLIT');
    expect(syncCodeOf(() => checkSamples(c, [{}]), FabricError)).toBe('E_FABRIC_SPLIT');
    expect(syncCodeOf(() => checkSamples(c, [Object.fromEntries([['constructor', feed]])]), FabricError)).toBeNull();
  });
});

describe('xpkg split, the process', () => {
  const split = (args: string[]) => {
    const r = spawnSync(process.execPath, [resolve('bin/xpkg.js'), 'split', ...args, '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    const last = r.stdout.trim().split('\n').pop() ?? '';
    return JSON.parse(last || 'null') as { result?: { at: unknown }; error?: { code: string } } | null;
  };
  const out = (f: string) => ['--head', join(dir, `${f}.head.onnx`), '--tail', join(dir, `${f}.tail.onnx`)];

  it('a malformed model file: E_FABRIC_SPLIT', () => {
    const p = join(dir, 'bad.onnx');
    writeFileSync(p, lenField(7, [0x10], [1]));
    expect(split([p, '--at', 'm', ...out('bad')])?.error?.code).toBe('E_FABRIC_SPLIT');
  });

  it('a device as the model (/dev/zero never ends): E_IO, not a read without end', () => {
    expect(split(['/dev/zero', '--at', 'm', ...out('zero')])?.error?.code).toBe('E_IO');
  });

  it('--tolerance that is no finite decimal, --check beyond 1000 samples: E_USAGE (were 0, Infinity, or all made up front)', () => {
    const p = join(dir, 'opts.onnx');
    writeFileSync(p, good);
    for (const t of ['', ' ', '0x10', '1e309', 'Infinity', '-1', 'NaN', '1e-4x'])
      expect(split([p, '--at', 'm', ...out('opts'), '--tolerance', t])?.error?.code).toBe('E_USAGE');
    for (const n of ['1001', '99999999999', '1e3'])
      expect(split([p, '--at', 'm', ...out('opts'), '--check', n])?.error?.code).toBe('E_USAGE');
    expect(split([p, '--at', 'm', ...out('opts'), '--tolerance', '1.5e-3', '--check', '2'])?.result?.at).toEqual([
      { name: 'm', elemType: 1 },
    ]);
  });

  it('a model cut at a tensor named constructor, checked by onnxruntime (was E_INTERNAL)', () => {
    const p = join(dir, 'ctor.onnx');
    writeFileSync(p, model([relu('x', 'constructor'), relu('constructor', 'y')]));
    expect(split([p, '--at', 'constructor', ...out('ctor')])?.result?.at).toEqual([
      { name: 'constructor', elemType: 1 },
    ]);
  });
});

describe('a fabric peer message (fabric/v2-binary.ts)', () => {
  it('a tensor named __proto__ is a tensor of the message, not its prototype', () => {
    const t: Tensor = { type: 'float32', dims: [2], data: new Float32Array([1, 2]) };
    const { body, headerLength } = encodeV2({}, 'inputs', Object.fromEntries([['__proto__', t]]));
    const { tensors } = decodeV2(body, String(headerLength), 'inputs');
    expect(Object.keys(tensors)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(tensors)).toBe(Object.prototype);
    expect((tensors as Record<string, unknown>).dims).toBeUndefined();
  });
});
