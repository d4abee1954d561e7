/**
 * Peer discovery on loopback: how long a device takes to list an `xpkg serve --announce` peer (from
 * the daemon's "announcing" log line: mDNS answer plus the `GET /v2/xpkg/peer` read), and to forget
 * it after a graceful stop (goodbye) beside after SIGKILL (the TTL runs out), N rounds each, and
 * the TXT record's size as packages are added (ids inline until the 1300-byte budget, then digest).
 *
 *   npm run build && npx tsx bench/discovery.ts [--runs N] [--ttl S]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPeerDirectory } from '../fabric/discovery/index.js';
import { decodeTxt, encodeTxt } from '../fabric/discovery/txt.js';
import { tempDir } from '../test/helpers/source.js';
import { arg, median } from './util.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(arg('runs') ?? 3);
const TTL = Number(arg('ttl') ?? 2);
const MDNS_PORT = 20_000 + Math.floor(Math.random() * 20_000);

function daemon(name: string): { child: ChildProcess; announced: Promise<number> } {
  const child = spawn(
    process.execPath,
    [
      join(root, 'bin/xpkg.js'),
      'serve',
      ...['--repo', tempDir(), '--port', '0', '--allow-unsigned', '--log-format', 'json'],
      ...['--host-profile', join(root, 'fixtures/hosts/x64-avx2.json')],
      ...['--announce', '--announce-name', name, '--announce-ttl', String(TTL)],
      ...['--mdns-interface', '127.0.0.1', '--mdns-port', String(MDNS_PORT)],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const announced = new Promise<number>((resolve) => {
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      if (s.includes('"msg":"announcing"')) resolve(performance.now());
    });
  });
  return { child, announced };
}

async function until(f: () => boolean): Promise<number> {
  while (!f()) await new Promise((r) => setTimeout(r, 5));
  return performance.now();
}

const dir = await createPeerDirectory({ discover: true, interface: '127.0.0.1', mdnsPort: MDNS_PORT, tickMs: 50 });
const has = (name: string) => dir.list().some((p) => p.id === name);
const found: number[] = [];
const goodbye: number[] = [];
const killed: number[] = [];
for (let i = 0; i < RUNS; i++) {
  for (const how of ['SIGTERM', 'SIGKILL'] as const) {
    const name = `bench-${i}-${how.toLowerCase()}`;
    const d = daemon(name);
    const t0 = await d.announced;
    found.push((await until(() => has(name))) - t0);
    const t1 = performance.now();
    d.child.kill(how);
    (how === 'SIGTERM' ? goodbye : killed).push((await until(() => !has(name))) - t1);
  }
}
await dir.close();

const host = { cpu: 'x64', accelerators: ['nvidia-gpu:sm_89'], runtimes: ['onnxruntime'] };
const sizes = [1, 5, 15, 16, 40, 1000].map((n) => {
  const txt = encodeTxt({ host, packages: Array.from({ length: n }, () => randomBytes(32).toString('hex')), free: 4 });
  const a = decodeTxt(txt);
  const inline = 'reason' in a ? -1 : a.packages.length;
  return { packages: n, bytes: txt.reduce((s, b) => s + b.length + 1, 0), inline };
});

const f = (x: number) => `${x.toFixed(0)} ms`;
console.log(
  `loopback mDNS, ${RUNS} rounds, peer TTL ${TTL} s, load average ${(await import('node:os')).loadavg()[0].toFixed(1)}`,
);
console.log(`listed after its first announcement   median ${f(median(found))}  (max ${f(Math.max(...found))})`);
console.log(`forgotten after SIGTERM (goodbye)     median ${f(median(goodbye))}`);
console.log(`forgotten after SIGKILL (TTL)         median ${f(median(killed))}`);
console.log(`goodbye / TTL                         ${(median(goodbye) / median(killed)).toFixed(3)}×`);
console.log('TXT record: packages → bytes (inline ids)');
for (const s of sizes)
  console.log(`  ${String(s.packages).padStart(5)} → ${String(s.bytes).padStart(5)} B (${s.inline} inline)`);
