// The issue-10 defect-7 report as a plain process (the engine's abort is timing-dependent and did not
// show inside vitest's workers): the promise-job runaway, then a healthy call, N times. Prints one JSON
// line: how many healthy calls failed, their codes, and how many workers the sandbox replaced.
import { Sandbox } from '../../dist/sandbox/index.js';

const rounds = Number(process.argv[2] ?? 40);
const sb = await Sandbox.create({ policy: { timeMs: 10_000 } });
await sb.load(
  'export async function run() { const f = () => Promise.resolve().then(f); f(); await new Promise(() => {}); }\nexport function ok() { return "ok"; }',
  'issue.js',
);
const failed = [];
for (let i = 0; i < rounds; i++) {
  await sb.call('run', {}, { deadlineMs: 100 }).catch(() => {});
  const r = await sb.call('ok').then(
    () => null,
    (e) => e.code ?? String(e),
  );
  if (r) failed.push(r);
}
const stats = await sb.stats();
await sb.close();
console.log(JSON.stringify({ rounds, failed, respawns: stats.respawns ?? 0 }));
