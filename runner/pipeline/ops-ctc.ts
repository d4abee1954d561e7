/**
 * The `ctc-decode` op: CTC greedy decoding of a recogniser's scores (or its per-step best classes)
 * with a vocabulary asset.
 */
import { ctcGreedyDecode } from '../../native/index.js';
import { Type } from '../../spec/typebox-lite.js';
import { ctcDecodeBest, ctcGreedyDecode as ctcProbabilities } from '../ops/ctc.js';
import { floats, hasNaN, tokensOf } from './ops-post.js';
import { AssetId, defineOp, Name } from './registry.js';
import type { TensorValue } from './values.js';

const Opt = Type.Optional;

defineOp({
  op: 'ctc-decode',
  stage: 'post',
  summary:
    'CTC greedy decoding of a [N, T, C] score tensor (or [N, T] best classes with their `scores`, or packed as class × 256 + round(255 × score) with `packed`) with a vocabulary asset (one token per line): text and mean character confidence per row.',
  params: Type.Object(
    {
      input: Name,
      output: Name,
      vocabulary: AssetId,
      blank: Opt(Type.Integer({ minimum: 0 })),
      appendSpace: Opt(Type.Boolean()),
      softmax: Opt(Type.Boolean()),
      probabilities: Opt(Type.Boolean()),
      widths: Opt(Name),
      scores: Opt(Name),
      // input: int32 [N, T] of best class × 256 + round(255 × its probability) (fixtures/onnx-prepost.ts bestClassPacked)
      packed: Opt(Type.Boolean()),
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input, ...(p.widths ? [p.widths] : []), ...(p.scores ? [p.scores] : [])],
  check: (p) =>
    (p.scores || p.packed) && (p.softmax || p.probabilities)
      ? 'with scores or packed the input holds best classes: softmax and probabilities do not apply'
      : p.scores && p.packed
        ? 'packed input carries its scores: scores does not apply'
        : undefined,
  writes: (p) => [p.output],
  assets: (p) => [p.vocabulary],
  async run(p, x) {
    const v = x.get(p.input, 'tensor', 'tensors');
    const vocab = await x.memo(`vocab:${p.vocabulary}:${p.appendSpace ? 1 : 0}`, async () =>
      tokensOf(await x.text(p.vocabulary), p.vocabulary, x, { appendSpace: p.appendSpace }),
    );
    const texts: string[] = [];
    const scores: number[] = [];
    // one at a time: a spread of a large batch's rows overflows the call stack
    const append = (r: { texts: string[]; scores: ArrayLike<number> }) => {
      for (let k = 0; k < r.texts.length; k++) {
        texts.push(r.texts[k]);
        scores.push(r.scores[k]);
      }
    };
    // `scores`: the model did the per-step argmax itself (a GPU variant), `input` holds class ids.
    const best = p.scores ? x.get(p.scores, 'tensor', 'tensors') : undefined;
    const bestOf = (i: number): TensorValue | undefined =>
      best && (best.kind === 'tensor' ? (i === 0 ? best : undefined) : best.items[i]);
    if (best && (best.kind === 'tensor') !== (v.kind === 'tensor'))
      x.fail('input and scores must both be tensors or both be tensor lists');
    // `widths`: the padded tensor(s) the model read (crop-batch: each item's valid width).
    const wt = p.widths ? x.get(p.widths, 'tensor', 'tensors') : undefined;
    const lensOf = (w: TensorValue | undefined) =>
      w?.widths ? { widths: w.widths, width: w.paddedWidth ?? w.dims[w.dims.length - 1] } : undefined;
    // A tensor list (one recognition call per region) decodes item by item, in order.
    const items = v.kind === 'tensor' ? [v] : v.items;
    if (best && best.kind === 'tensors' && best.items.length !== items.length)
      x.fail(`${items.length} inputs and ${best.items.length} scores`);
    if (wt && wt.kind !== v.kind) x.fail('input and widths must both be tensors or both be tensor lists');
    if (wt?.kind === 'tensors' && wt.items.length !== items.length)
      x.fail(`${items.length} inputs and ${wt.items.length} padded tensors`);
    const blank = p.blank ?? 0;
    // class ids run 0…vocabulary (the tokens and one blank): a blank past them would leave none
    if (blank > vocab.length)
      x.fail(`blank ${blank} is not a class of a ${vocab.length}-token vocabulary`, { blank, tokens: vocab.length });
    for (const [i, given] of items.entries()) {
      // a recogniser exported without a batch dim gives one line's [T, C] scores
      const t = given.dims.length === 2 && !best && !p.packed ? { ...given, dims: [1, ...given.dims] } : given;
      if (t.dims[0] === 0) continue;
      // A padded tensor (crop-batch): steps past each item's valid width only saw padding.
      let lengths: Int32Array | undefined;
      const lens = lensOf(wt?.kind === 'tensor' ? wt : wt?.items[i]);
      if (lens) {
        if (lens.widths.length !== t.dims[0]) x.fail(`${lens.widths.length} widths for a batch of ${t.dims[0]}`);
        lengths = Int32Array.from(lens.widths, (w) => Math.min(t.dims[1], Math.ceil((w * t.dims[1]) / lens.width)));
      }
      const common = { vocabulary: vocab, blank, offset: blank === 0 ? 1 : 0, ...(lengths ? { lengths } : {}) };
      if (p.packed) {
        if (t.dims.length !== 2 || t.type !== 'int32')
          x.fail(`packed input must be int32 [N, T], got ${t.type} [${t.dims.join(', ')}]`);
        const v = t.data as Int32Array;
        const ids = new Int32Array(v.length);
        const sc = new Float32Array(v.length);
        for (let k = 0; k < v.length; k++) {
          ids[k] = v[k] >> 8;
          sc[k] = (v[k] & 255) / 255;
        }
        append(ctcDecodeBest(ids, sc, t.dims, common));
        continue;
      }
      const s = bestOf(i);
      if (s) {
        if (t.dims.length !== 2 || t.type.startsWith('float'))
          x.fail(`with scores, input must hold [N, T] class ids, got ${t.type} [${t.dims.join(', ')}]`);
        if (s.dims.length !== 2 || s.dims[0] !== t.dims[0] || s.dims[1] !== t.dims[1])
          x.fail(`scores [${s.dims.join(', ')}] do not match class ids [${t.dims.join(', ')}]`);
        append(ctcDecodeBest(t.data as ArrayLike<number | bigint>, floats(s, x), t.dims, common));
        continue;
      }
      if (t.dims.length !== 3) x.fail(`expected [N, T, C] scores, got [${t.dims.join(', ')}]`);
      const classes = t.dims[2];
      if (blank >= classes) x.fail(`blank ${blank} is not one of the model's ${classes} classes`, { blank, classes });
      if (classes !== vocab.length + 1)
        x.fail(`model has ${classes} classes but the vocabulary gives ${vocab.length} tokens + blank`, {
          classes,
          tokens: vocab.length,
        });
      // Probabilities: the early-exit scan (runner/ops/ctc.ts) beats the kernel's full scan.
      const r =
        p.probabilities && !p.softmax
          ? ctcProbabilities(floats(t, x), t.dims, { ...common, probabilities: true })
          : await ctcGreedyDecode(floats(t, x), { ...common, dims: [...t.dims], softmax: p.softmax ?? false });
      append(r);
    }
    if (hasNaN(scores)) x.fail('the scores hold NaN', { nan: true });
    x.set(p.output, { kind: 'texts', texts, scores: Float32Array.from(scores) });
  },
});
