/**
 * The browser entry's worker: packages are opened, verified and run here, off the page's thread
 * (hashing, onnxruntime-web and the kernels would otherwise freeze it). One PackageSession per
 * opened package; each request answers once, with progress messages before.
 */

import { toXpkgError, UsageError } from '../spec/errors.js';
import type { Reply, Request } from './protocol.js';
import type { PackageSession } from './session.js';

// The library (the bundle's largest chunk) loads now but is not waited for by a runtime start:
// onnxruntime-web's worker starts as soon as this small script runs.
const library = import('./session.js');
library.catch(() => {}); // reported by the requests that need it

const scope = self as unknown as { postMessage(m: unknown): void; onmessage: ((e: MessageEvent) => void) | null };

const sessions = new Map<number, PackageSession>();
let next = 1;
// onnxruntime-web's WASM files sit beside this bundle.
const wasmBase = new URL('./', import.meta.url).href;

const post = (m: Reply) => scope.postMessage(m);

async function handle(m: Request): Promise<unknown> {
  const session = (pkg: number) => {
    const s = sessions.get(pkg);
    // a call on a closed package is the caller's mistake, as on the page's thread (index.ts), not an internal error
    if (!s) throw new UsageError('E_USAGE', 'the package is closed');
    return s;
  };
  switch (m.op) {
    case 'open': {
      const { PackageSession } = await library;
      const s = await PackageSession.open(m.input, { wasmBase, ...m.options });
      const pkg = next++;
      sessions.set(pkg, s);
      return { pkg, opened: s.opened };
    }
    case 'verify':
      return session(m.pkg).verify((progress) => post({ id: m.id, progress }));
    case 'prepare':
      return session(m.pkg).prepare((progress) => post({ id: m.id, progress }));
    case 'run':
      return session(m.pkg).run(m.inputs, (progress) => post({ id: m.id, progress }));
    case 'runtime':
      // Resolves once started; a failure is reported again by the model load that awaits it.
      await (await import('./ort-web.js')).startRuntime({ wasmBase, ...m.options }).started;
      return null;
    case 'close': {
      const s = sessions.get(m.pkg);
      sessions.delete(m.pkg);
      await s?.close();
      return null;
    }
  }
}

scope.onmessage = (e: MessageEvent) => {
  const m = e.data as Request;
  handle(m).then(
    (value) => post({ id: m.id, ok: true, value }),
    (err: unknown) => post({ id: m.id, ok: false, error: toXpkgError(err).toJSON() }),
  );
};
