/**
 * Where onnxruntime placed each node of a session, from its own profile: a session created with
 * profiling writes one JSON trace whose kernel events name the provider that ran each node. The
 * stock binding offers no other way to ask. Profiling is on for a session's first run only (it is
 * ended then), so later runs cost nothing; anything unreadable just leaves the count unknown.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** onnxruntime's provider names → the manifest's (`CUDAExecutionProvider` → `cuda`). */
export function shortProvider(ep: string): string {
  const known: Record<string, string> = {
    CPUExecutionProvider: 'cpu',
    CUDAExecutionProvider: 'cuda',
    WebGpuExecutionProvider: 'webgpu',
    TensorrtExecutionProvider: 'tensorrt',
  };
  return known[ep] ?? ep.replace(/ExecutionProvider$/, '').toLowerCase();
}

/** A private folder for one session's trace, or null when none can be made (then nothing is counted). */
export function profileFolder(): string | null {
  try {
    return mkdtempSync(join(tmpdir(), 'xpkg-ort-profile-'));
  } catch {
    return null;
  }
}

/** Distinct nodes per provider in an onnxruntime trace (its `Node` events ending `_kernel_time`). */
export function countPlacement(trace: unknown): Record<string, number> | null {
  if (!Array.isArray(trace)) return null;
  const nodeProvider = new Map<string, string>();
  for (const e of trace as { cat?: unknown; name?: unknown; args?: { provider?: unknown } }[]) {
    if (
      e?.cat !== 'Node' ||
      typeof e.name !== 'string' ||
      !e.name.endsWith('_kernel_time') ||
      typeof e.args?.provider !== 'string'
    )
      continue;
    nodeProvider.set(e.name.slice(0, -'_kernel_time'.length), shortProvider(e.args.provider));
  }
  if (!nodeProvider.size) return null;
  const counts: Record<string, number> = {};
  for (const p of nodeProvider.values()) counts[p] = (counts[p] ?? 0) + 1;
  return counts;
}

/** Reads the trace onnxruntime wrote into `dir` (after endProfiling) and removes the folder. */
export function readPlacement(dir: string): Record<string, number> | null {
  try {
    const file = readdirSync(dir).find((f) => f.endsWith('.json'));
    return file ? countPlacement(JSON.parse(readFileSync(join(dir, file), 'utf8'))) : null;
  } catch {
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
