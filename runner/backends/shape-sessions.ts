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
    /** Makes another session like the first (null: one session only). */
    readonly create: (() => Promise<S>) | null,
    readonly limit: number,
  ) {}

  /** Sessions held now (the first included). */
  get count(): number {
    return 1 + this.#made.length;
  }

  /** The session for inputs of shape `key`. */
  pick(key: string): S | Promise<S> {
    if (!this.create || this.limit <= 1) return this.first;
    this.#firstKey ??= key;
    if (key === this.#firstKey) return this.first;
    const known = this.#byShape.get(key);
    if (known) return known;
    if (1 + this.#byShape.size >= this.limit) return this.first;
    const made = this.create().then(
      (s) => (this.#made.push(s), s),
      () => this.first,
    );
    this.#byShape.set(key, made);
    return made;
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
