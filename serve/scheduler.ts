/**
 * Per-model admission: at most `concurrency` runs in flight, at most `queue` waiting; a request that
 * finds the queue full is refused at once (E_SERVE_QUEUE_FULL → 429 with Retry-After), never parked.
 * The version is picked when a request leaves the queue, so a hot swap moves waiting requests to the
 * new version too. Optional dynamic batching joins waiting requests of a batchable model along the
 * first dimension (see batch.ts) and splits the outputs back.
 */
import { ServeError, type XpkgError } from '../spec/errors.js';
import { type BatchPlan, joinBatch, splitBatch } from './batch.js';
import type { RunReply } from './protocol.js';
import type { LoadedVersion } from './version.js';

export interface SchedulerConfig {
  concurrency: number;
  queue: number;
  /** A request still queued or running after this long fails with E_SERVE_TIMEOUT. */
  timeoutMs: number;
  /** Dynamic batching, for models whose inputs and outputs share a named first dimension. */
  batch?: { max: number; delayMs: number; plan: BatchPlan };
}

export interface Ran {
  version: LoadedVersion;
  result: RunReply;
  queueMs: number;
  /** Requests in the batch this one ran in (1 without batching). */
  batched: number;
}

interface Job {
  inputs: Record<string, unknown>;
  transfer: ArrayBuffer[];
  pinned?: string;
  /** Only the tail of this split model (never batched with other jobs). */
  tail?: string;
  enqueued: number;
  done: boolean;
  timer?: NodeJS.Timeout;
  resolve(r: Ran): void;
  reject(e: unknown): void;
}

export interface SchedulerHooks {
  /** The version a request runs on now (the current one, or the pinned id while it is loaded). */
  pick(pinned?: string): LoadedVersion;
  depth(queued: number, active: number): void;
}

export class ModelScheduler {
  private active = 0;
  private readonly queue: Job[] = [];
  private waitTimer: NodeJS.Timeout | undefined;
  /** Smoothed run time, for Retry-After. */
  private runMs = 50;

  constructor(
    readonly name: string,
    private readonly config: SchedulerConfig,
    private readonly hooks: SchedulerHooks,
  ) {}

  /** Batching follows the version serving: a new version may or may not be batchable. */
  setBatch(batch: SchedulerConfig['batch']): void {
    this.config.batch = batch;
  }

  get depth(): { queued: number; active: number } {
    return { queued: this.queue.length, active: this.active };
  }

  submit(
    inputs: Record<string, unknown>,
    o: { pinned?: string; transfer?: ArrayBuffer[]; tail?: string; timeoutMs?: number } = {},
  ): Promise<Ran> {
    if (this.active >= this.config.concurrency && this.queue.length >= this.config.queue) {
      const waves = Math.ceil((this.queue.length + 1) / this.config.concurrency);
      const retryAfter = Math.max(1, Math.ceil((waves * this.runMs) / 1000));
      return Promise.reject(
        new ServeError('E_SERVE_QUEUE_FULL', `model ${this.name} has ${this.queue.length} requests waiting already`, {
          model: this.name,
          queued: this.queue.length,
          concurrency: this.config.concurrency,
          retryAfter,
        }),
      );
    }
    // the version is checked now too, so an unknown pinned version is a 404 at once, not after the queue
    this.hooks.pick(o.pinned);
    return new Promise<Ran>((resolve, reject) => {
      const job: Job = {
        inputs,
        transfer: o.transfer ?? [],
        ...(o.pinned ? { pinned: o.pinned } : {}),
        ...(o.tail ? { tail: o.tail } : {}),
        enqueued: performance.now(),
        done: false,
        resolve,
        reject,
      };
      // a caller's own deadline (an offloading device's) may be shorter: nobody waits for the answer after it
      const ms = Math.min(this.config.timeoutMs, o.timeoutMs ?? Infinity);
      job.timer = setTimeout(() => {
        const i = this.queue.indexOf(job);
        if (i >= 0) this.queue.splice(i, 1);
        this.finish(job, undefined, timeout(this.name, ms, i >= 0 ? 'queued' : 'running'));
      }, ms);
      this.queue.push(job);
      this.pump();
    });
  }

  private finish(job: Job, ran: Ran | undefined, error?: unknown): void {
    if (job.done) return;
    job.done = true;
    clearTimeout(job.timer);
    if (error !== undefined) job.reject(error);
    else job.resolve(ran!);
    this.hooks.depth(this.queue.length, this.active);
  }

  private pump(): void {
    const b = this.config.batch;
    while (this.active < this.config.concurrency && this.queue.length > 0) {
      if (b && this.queue.length < b.max) {
        const waited = performance.now() - this.queue[0].enqueued;
        if (waited < b.delayMs) {
          this.waitTimer ??= setTimeout(
            () => {
              this.waitTimer = undefined;
              this.pump();
            },
            Math.ceil(b.delayMs - waited),
          );
          break;
        }
      }
      const jobs = b ? this.takeBatch(b.max, b.plan) : [this.queue.shift()!];
      this.active++;
      void this.execute(jobs).finally(() => {
        this.active--;
        this.pump();
      });
    }
    this.hooks.depth(this.queue.length, this.active);
  }

  /** The oldest job and up to max-1 others that can run with it (same pinned version, same trailing dims). */
  private takeBatch(max: number, plan: BatchPlan): Job[] {
    const first = this.queue.shift()!;
    const jobs = [first];
    if (first.tail) return jobs;
    const key = plan.key(first.inputs);
    for (let i = 0; i < this.queue.length && jobs.length < max; ) {
      const j = this.queue[i];
      if (j.pinned === first.pinned && !j.tail && key !== null && plan.key(j.inputs) === key) {
        jobs.push(j);
        this.queue.splice(i, 1);
      } else i++;
    }
    return jobs;
  }

  private async execute(jobs: Job[]): Promise<void> {
    const live = jobs.filter((j) => !j.done);
    if (live.length === 0) return;
    const started = performance.now();
    let version: LoadedVersion;
    try {
      version = this.hooks.pick(live[0].pinned);
    } catch (e) {
      for (const j of live) this.finish(j, undefined, e);
      return;
    }
    try {
      if (live.length === 1) {
        const result = await version.run(live[0].inputs, live[0].transfer, live[0].tail);
        this.finish(live[0], { version, result, queueMs: started - live[0].enqueued, batched: 1 });
      } else {
        const plan = this.config.batch!.plan;
        const joined = joinBatch(
          plan,
          live.map((j) => j.inputs),
        );
        const result = await version.run(joined.inputs);
        const parts = splitBatch(plan, result, joined.sizes);
        live.forEach((j, i) =>
          this.finish(j, { version, result: parts[i], queueMs: started - j.enqueued, batched: live.length }),
        );
      }
    } catch (e) {
      for (const j of live) this.finish(j, undefined, e as XpkgError);
    } finally {
      this.runMs = 0.8 * this.runMs + 0.2 * (performance.now() - started);
    }
  }
}

function timeout(model: string, ms: number, where: string): ServeError {
  return new ServeError('E_SERVE_TIMEOUT', `the request to ${model} was still ${where} after ${ms} ms`, {
    model,
    timeoutMs: ms,
    where,
  });
}
