/**
 * One onnxruntime session per input shape, for a model on an accelerator. Measured on an H200 with
 * the CUDA provider (bench/gpu/suite.ts, the OCR models): a session pays its first-run set-up
 * (cuDNN's exhaustive algorithm search, 0.3–0.8 s) again whenever its input shape differs from the
 * previous run's — also for a shape it ran before (the OCR detector at 960×544 paid 434 ms a second
 * time after other shapes; recognising lines of alternating widths cost ~330 ms a line, every run).
 * A session that only ever sees one shape keeps its selection, so each new shape gets a session of
 * its own, up to `limit` (each holds its own copy of the weights on the device); further shapes
 * share the first session. A session that cannot be created (device memory) falls back to the first.
 */
/** A session as far as the pool needs it (onnxruntime-node's, or one of xpkg's C API binding). */
interface Releasable {
  release(): Promise<void>;
}

export class ShapeSessions<S extends Releasable> {
  readonly #byShape = new Map<string, Promise<S>>();
  readonly #made: S[] = [];
  #firstKey: string | undefined;

  constructor(
    readonly first: S,
    /** Makes another session like the first, for inputs of shape `key` (null: one session only). */
    readonly create: ((key: string) => Promise<S>) | null,
    readonly limit: number,
    /**
     * The first session also serves the first shape seen (default). False where sessions made for
     * one shape differ from the first (CUDA graphs): then the first serves only shapes over the limit.
     */
    readonly firstTakesShape = true,
  ) {}

  /** Sessions held now (the first included). */
  get count(): number {
    return 1 + this.#made.length;
  }

  /** The session for inputs of shape `key`. */
  pick(key: string): S | Promise<S> {
    if (!this.create || this.limit <= 1) return this.first;
    if (this.firstTakesShape) {
      this.#firstKey ??= key;
      if (key === this.#firstKey) return this.first;
    }
    const known = this.#byShape.get(key);
    if (known) return known;
    if (1 + this.#byShape.size >= this.limit) return this.first;
    const made = this.create(key).then(
      (s) => (this.#made.push(s), s),
      () => this.first,
    );
    this.#byShape.set(key, made);
    return made;
  }

  /** Every session held now, the first one first. */
  all(): S[] {
    return [this.first, ...this.#made];
  }

  /** Releases every session but the first (its owner releases that one). */
  async releaseOthers(): Promise<void> {
    await Promise.all([...this.#byShape.values()]);
    const made = this.#made.splice(0);
    this.#byShape.clear();
    await Promise.all(made.map((s) => s.release().catch(() => {})));
  }
}

/** The key of a run's input shapes, in input order. */
export const shapeKey = (names: readonly string[], dims: (name: string) => readonly number[]) =>
  names.map((n) => dims(n).join('x')).join(';');

/**
 * The sizes a shape key gives the inputs' symbolic dimensions (a symbol met with two sizes is left
 * out): a session made for that one shape fixes them, so onnxruntime folds the shape arithmetic.
 */
export function freeDimsOf(
  key: string,
  shapes: readonly (readonly (number | string)[] | undefined)[],
): [string, number][] {
  const dims = key.split(';').map((d) => (d === '' ? [] : d.split('x').map(Number)));
  const seen = new Map<string, number | null>();
  shapes.forEach((shape, i) =>
    shape?.forEach((s, j) => {
      if (typeof s !== 'string' || dims[i]?.[j] === undefined) return;
      const v = dims[i][j];
      seen.set(s, seen.has(s) && seen.get(s) !== v ? null : v);
    }),
  );
  return [...seen].filter((e): e is [string, number] => e[1] !== null);
}
