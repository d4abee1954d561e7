/** `xpkg serve`: the inference daemon (serve/), until SIGTERM or SIGINT, then a graceful stop. */
import type { Command } from 'commander';
import { action, intOption, msOption, perCoreOption, portOption, usage } from '../framework.js';
import type { RunFlags } from './run.js';

interface ServeFlags
  extends Pick<
    RunFlags,
    'trust' | 'trustDir' | 'allowUnsigned' | 'allowDowngrade' | 'stateDir' | 'threads' | 'maxPixels' | 'maxTensorBytes'
  > {
  repo: string;
  ref?: string[];
  refPoll?: string;
  /** The address to listen on (`run`'s --host is a host profile; here that is --host-profile). */
  host?: string;
  hostProfile?: string;
  port?: string;
  isolation?: string;
  workers?: string;
  workerNice?: string;
  loadPatience?: string;
  loadTimeout?: string;
  concurrency?: string;
  queue?: string;
  inferTimeout?: string;
  bodyLimit?: string;
  headersTimeout?: string;
  requestTimeout?: string;
  drainTimeout?: string;
  poll?: string;
  memoryBudget?: string;
  batchMax?: string;
  batchDelay?: string;
  repositoryApi?: boolean;
  logFormat?: string;
  logLevel?: string;
  fabricTokenFile?: string;
  json?: boolean;
  announce?: boolean;
  announceName?: string;
  announceTtl?: string;
  mdnsInterface?: string;
  mdnsPort?: string;
  discover?: boolean;
  peer?: string[];
}

const collect = (v: string, prev: string[] = []) => [...prev, v];
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export function register(program: Command): void {
  const cmd = program
    .command('serve')
    .description(
      'serve the packages of a folder over the Open Inference Protocol (V2 REST), with hot swap, metrics and logs',
    )
    .requiredOption('--repo <dir>', 'model repository: a folder of signed .xpkg files (watched: add, replace, delete)')
    .option('--host <address>', 'address to listen on (default 127.0.0.1)')
    .option('--port <n>', 'port (default 8000; 0 picks a free one)')
    .option('--trust <file.pub>', 'trust this public key (repeatable)', collect)
    .option('--trust-dir <dir>', 'trust every *.pub in this folder')
    .option('--allow-unsigned', 'serve packages without a trusted signature (integrity is still checked)')
    .option(
      '--allow-downgrade',
      'accept a lower sequence than already accepted for the package name from a trusted key',
    )
    .option('--state-dir <dir>', 'anti-rollback state folder')
    .option('--host-profile <file>', 'a host profile instead of detecting this machine (same as XPKG_HOST)')
    .option('--threads <n>', 'intra-op threads per model (0: the backend chooses)')
    .option('--max-pixels <n>', 'the most pixels of one image (default 100000000)')
    .option('--max-tensor-bytes <n>', 'the most bytes of one tensor (default 1 GiB)')
    .option('--isolation <kind>', 'model workers: process (default; a crash ends only that worker) or thread')
    .option('--workers <n>', 'workers per loaded version (default 1)')
    .option(
      '--worker-nice <n>',
      'CPU niceness of the model workers, 0-19: the event loop first on a busy machine (default 0)',
    )
    .option(
      '--load-patience <ms>',
      "a new version loads at niceness 19 where that can be undone; after this long at the workers' (default 5000)",
    )
    .option(
      '--load-timeout <ms>',
      'a load (verify, load, warm up) still running after this long is abandoned and its file refused (default 300000)',
    )
    .option('--concurrency <n>', 'runs in flight per model (default 4)')
    .option('--queue <n>', 'requests waiting per model beyond those; more get 429 (default 64)')
    .option('--infer-timeout <ms>', 'a request queued or running longer fails with 504 (default 30000)')
    .option('--body-limit <bytes>', 'largest request body (default 67108864)')
    .option('--headers-timeout <ms>', 'time to receive the headers (default 10000)')
    .option('--request-timeout <ms>', 'time to receive a whole request; slower clients get 408 (default 30000)')
    .option('--drain-timeout <ms>', 'time an old version may finish its requests after a swap (default 30000)')
    .option('--poll <ms>', 'repository poll period besides file events (default 1000)')
    .option('--memory-budget <MiB>', 'memory all loaded versions may hold, both copies during a swap included')
    .option(
      '--batch-max <n>',
      'dynamic batching: join up to n requests of a batchable model (inputs and outputs ["N", …])',
    )
    .option('--batch-delay <ms>', 'dynamic batching: wait up to this long for a batch to fill (default 2)')
    .option(
      '--repository-api',
      'enable load/unload/index (loopback only, or with XPKG_REPOSITORY_TOKEN as a bearer token)',
    )
    .option(
      '--ref <[name=]reference>',
      'also serve this registry reference (oci://host/repo:tag): pulled into the cache and kept in the repository as <name>.xpkg (repeatable)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option(
      '--ref-poll <ms>',
      'how often references are resolved again, so a moved tag swaps in (default 60000; 0: only at start)',
    )
    .option(
      '--fabric-token-file <file>',
      'serve the tails of split models to peers presenting the token in this file (split inference)',
    )
    .option('--log-format <format>', 'text (default) or json (one object per line, with the request id)')
    .option('--log-level <level>', 'info (default), trace, debug, warn, error, fatal, silent')
    .option('--json', 'print one JSON document on stdout when the server stops')
    .option('--announce', 'announce this daemon on the local network as a split-inference peer (DNS-SD _xpkg._tcp)')
    .option('--announce-name <name>', 'instance name to announce (default xpkg-<hostname>-<port>)')
    .option('--announce-ttl <s>', 'TTL of the announcement: devices forget a silent peer after it (default 120)')
    .option('--discover', 'find peers to offload split models to (DNS-SD _xpkg._tcp over mDNS)')
    .option('--peer <url>', 'a peer xpkg serve at this base URL to offload to (repeatable)', collect)
    .option('--mdns-interface <ipv4>', 'announce and discover on this interface only (default: all)')
    .option('--mdns-port <n>', 'mDNS UDP port (default 5353)');
  action<[], ServeFlags>(cmd, async (io, opts) => {
    // A launcher killed outright (SIGKILL passes nothing on) stops the daemon as SIGTERM would;
    // asked first, before any model worker inherits the environment.
    const orphaned = (await import('../relaunch.js')).launcherGone();
    const isolation = opts.isolation ?? 'process';
    if (isolation !== 'process' && isolation !== 'thread')
      throw usage(`--isolation is process or thread, not ${JSON.stringify(isolation)}`);
    const logFormat = opts.logFormat ?? 'text';
    if (logFormat !== 'text' && logFormat !== 'json')
      throw usage(`--log-format is text or json, not ${JSON.stringify(logFormat)}`);
    // pino's levels: any other threw from inside the logger, E_INTERNAL
    if (opts.logLevel !== undefined && !LOG_LEVELS.includes(opts.logLevel))
      throw usage(`--log-level is one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(opts.logLevel)}`);
    // The keys and host profile every package load reads: a missing or wrong file is its own coded
    // error now, not a daemon that starts and then refuses every package (or an empty repository's none).
    if (opts.trust?.length || opts.trustDir !== undefined)
      await (await import('../../signing/trust.js')).loadTrustStore({
        ...(opts.trust ? { trust: opts.trust } : {}),
        ...(opts.trustDir !== undefined ? { trustDir: opts.trustDir } : {}),
      });
    if (opts.hostProfile !== undefined || process.env.XPKG_HOST)
      await (await import('../../runner/host.js')).resolveHost(
        opts.hostProfile !== undefined ? { host: opts.hostProfile } : {},
      );
    const { runnerOptions } = await import('./run.js');
    const { startServer } = await import('../../serve/server.js');
    const { ownVersion } = await import('../main.js');
    const batchMax = intOption(opts.batchMax, 'batch-max', 2);
    const { parseReference } = await import('../../serve/references.js');
    const references = (opts.ref ?? []).map(parseReference);
    const announce = opts.announce ? await announceOptions(opts) : undefined;
    const discover =
      opts.discover || opts.peer?.length ? (await import('./peers.js')).directoryOptions(opts) : undefined;
    const fabricToken = opts.fabricTokenFile
      ? await (await import('../../fabric/auth.js')).readToken(opts.fabricTokenFile)
      : undefined;
    const server = await startServer({
      repo: opts.repo,
      ...(references.length ? { references } : {}),
      ...(opts.refPoll !== undefined ? { refPollMs: msOption(opts.refPoll, 'ref-poll', 0) } : {}),
      host: opts.host ?? '127.0.0.1',
      port: portOption(opts.port, 'port') ?? 8000,
      runner: runnerOptions({ ...opts, host: opts.hostProfile }),
      isolation,
      ...(opts.workers !== undefined ? { workers: perCoreOption(opts.workers, 'workers') } : {}),
      ...(opts.workerNice !== undefined ? { workerNice: niceOption(opts.workerNice) } : {}),
      ...(opts.loadPatience !== undefined ? { loadPatienceMs: msOption(opts.loadPatience, 'load-patience', 0) } : {}),
      ...(opts.loadTimeout !== undefined ? { loadTimeoutMs: msOption(opts.loadTimeout, 'load-timeout', 100) } : {}),
      ...(opts.concurrency !== undefined ? { concurrency: intOption(opts.concurrency, 'concurrency') } : {}),
      ...(opts.queue !== undefined ? { queue: intOption(opts.queue, 'queue', 0) } : {}),
      ...(opts.inferTimeout !== undefined ? { inferTimeoutMs: msOption(opts.inferTimeout, 'infer-timeout') } : {}),
      ...(opts.bodyLimit !== undefined ? { bodyLimit: intOption(opts.bodyLimit, 'body-limit') } : {}),
      ...(opts.headersTimeout !== undefined
        ? { headersTimeoutMs: msOption(opts.headersTimeout, 'headers-timeout') }
        : {}),
      ...(opts.requestTimeout !== undefined
        ? { requestTimeoutMs: msOption(opts.requestTimeout, 'request-timeout') }
        : {}),
      ...(opts.drainTimeout !== undefined ? { drainMs: msOption(opts.drainTimeout, 'drain-timeout', 0) } : {}),
      ...(opts.poll !== undefined ? { pollMs: msOption(opts.poll, 'poll', 10) } : {}),
      ...(opts.memoryBudget !== undefined
        ? { memoryBudget: intOption(opts.memoryBudget, 'memory-budget')! * 1048576 }
        : {}),
      ...(batchMax !== undefined
        ? { batch: { max: batchMax, delayMs: msOption(opts.batchDelay, 'batch-delay', 0) ?? 2 } }
        : {}),
      repositoryApi: Boolean(opts.repositoryApi),
      ...(fabricToken ? { fabricToken } : {}),
      ...(process.env.XPKG_REPOSITORY_TOKEN ? { repositoryToken: process.env.XPKG_REPOSITORY_TOKEN } : {}),
      logFormat,
      ...(opts.logLevel ? { logLevel: opts.logLevel } : {}),
      serverVersion: ownVersion(),
      ...(announce ? { announce } : {}),
      ...(discover ? { discover } : {}),
    });
    // Graceful stop: stop accepting, finish what is in flight, unload, exit 0. Later stop signals
    // change nothing: a terminal's Ctrl-C reaches this daemon twice when it runs under the launcher
    // (cli/relaunch.ts forwards what the launcher got), and the second must not cut the drain short.
    const signal = await new Promise<NodeJS.Signals | 'launcher gone'>((resolve) => {
      process.on('SIGTERM', () => resolve('SIGTERM'));
      process.on('SIGINT', () => resolve('SIGINT'));
      void orphaned.then(() => resolve('launcher gone'));
    });
    server.log.info({ signal }, 'stopping');
    await server.close();
    io.log(`xpkg serve: stopped on ${signal}`);
    return { result: { url: server.url, stopped: signal }, human: '' };
  });
}

async function announceOptions(opts: ServeFlags) {
  const { mdnsOptions } = await import('./peers.js');
  const { checkInstanceName } = await import('../../fabric/discovery/announce.js');
  if (opts.announceName !== undefined) checkInstanceName(opts.announceName);
  const ttl = intOption(opts.announceTtl, 'announce-ttl');
  return {
    ...mdnsOptions(opts),
    ...(opts.announceName !== undefined ? { name: opts.announceName } : {}),
    ...(ttl !== undefined ? { ttlSec: ttl } : {}),
  };
}

/** --worker-nice: 0 to 19 (raising a worker's niceness needs no privilege; lowering would). */
function niceOption(value: string): number {
  const n = intOption(value, 'worker-nice', 0)!;
  if (n > 19) throw usage(`--worker-nice is 0 to 19, not ${n}`);
  return n;
}
