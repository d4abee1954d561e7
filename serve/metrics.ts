/**
 * Prometheus metrics of the daemon (prom-client), on a registry of its own so that two servers in
 * one process (tests, benches) never share counters.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Latency buckets in seconds: 0.5 ms to 30 s. */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'xpkg_serve_requests_total',
    help: 'HTTP requests by route, status and error code ("ok" when none)',
    labelNames: ['route', 'status', 'code', 'model'] as const,
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'xpkg_serve_request_duration_seconds',
    help: 'HTTP request latency, from the first byte read to the response',
    labelNames: ['route', 'model'] as const,
    buckets: BUCKETS,
    registers: [this.registry],
  });
  readonly stages = new Histogram({
    name: 'xpkg_serve_stage_duration_seconds',
    help: 'time per stage of an inference: receive (the request body), queue, worker (round trip), then the pipeline stages (decode, pre, infer:<model>, post)',
    labelNames: ['model', 'stage'] as const,
    buckets: BUCKETS,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'xpkg_serve_queue_depth',
    help: 'requests waiting for a run slot, per model',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly inflight = new Gauge({
    name: 'xpkg_serve_inflight',
    help: 'runs in flight, per model',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly loaded = new Gauge({
    name: 'xpkg_serve_loaded_versions',
    help: 'versions loaded per model (2 while a swap drains the old one)',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly swaps = new Counter({
    name: 'xpkg_serve_swap_events_total',
    help: 'repository events per model: loaded, swapped, refused, superseded, unloaded',
    labelNames: ['model', 'event'] as const,
    registers: [this.registry],
  });
  readonly restarts = new Counter({
    name: 'xpkg_serve_worker_restarts_total',
    help: 'model workers that died and were replaced',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly memory = new Gauge({
    name: 'xpkg_serve_memory_bytes',
    help: 'memory charged to the budget per loaded version',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });

  /** Sampled every millisecond; a sample is the time between two wake-ups, so the lag is that minus 1 ms. */
  private readonly loop = monitorEventLoopDelay({ resolution: 1 });
  readonly loopLag = new Gauge({
    name: 'xpkg_serve_event_loop_lag_p99_seconds',
    help: 'p99 of how late the event loop woke up since the previous scrape (1 ms sampling)',
    registers: [this.registry],
    collect: () => {
      const p99 = this.loop.count > 0 ? Math.max(0, this.loop.percentile(99) / 1e6 - 1) : 0;
      this.loopLag.set(p99 / 1000);
      this.loop.reset();
    },
  });

  constructor(process = true) {
    if (process) collectDefaultMetrics({ register: this.registry, prefix: 'xpkg_serve_' });
    this.loop.enable();
  }

  close(): void {
    this.loop.disable();
  }
}
