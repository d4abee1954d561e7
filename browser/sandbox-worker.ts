/**
 * The sandbox's nested worker in the browser: takes what the host started it with (the shared
 * channel, the policy, the compiled QuickJS), then runs the sandbox's own worker module.
 */
import { setStartData } from './sandbox/transport.js';

const scope = self as unknown as { onmessage: ((e: MessageEvent) => void) | null };
scope.onmessage = (e: MessageEvent) => {
  scope.onmessage = null;
  setStartData(e.data);
  void import('../sandbox/worker.js');
};
