/**
 * Compile-time check (tsc -p tsconfig.browser.json; nothing here runs) that every browser twin of
 * browser/build.ts's TWINS exports, with compatible types, what the library's own modules import
 * from the module it replaces: a change on the Node side that a twin does not follow fails the
 * typecheck instead of the bundle at run time.
 */

import type * as NodeNativeEnv from '../native/env.js';
import type * as NodeOciRef from '../oci/ref.js';
import type * as NodeFileSource from '../pack/file-source.js';
import type * as NodePlatform from '../platform/index.js';
import type * as NodeBackends from '../runner/backends/index.js';
import type * as NodeHost from '../runner/host.js';
import type * as NodeDecoder from '../runner/pipeline/image-decoder.js';
import type * as NodeSharp from '../runner/pipeline/lazy-sharp.js';
import type * as NodeReference from '../runner/reference.js';
import type * as NodeThread from '../sandbox/thread.js';
import type * as NodeTransport from '../sandbox/transport.js';
import type * as NodeVerify from '../signing/verify.js';
import type * as BrowserPlatform from './platform.js';
import type * as BrowserThread from './sandbox/thread.js';
import type * as BrowserTransport from './sandbox/transport.js';
import type * as BrowserBackends from './twins/backends.js';
import type * as BrowserFileSource from './twins/file-source.js';
import type * as BrowserHost from './twins/host.js';
import type * as BrowserDecoder from './twins/image-decoder.js';
import type * as BrowserSharp from './twins/lazy-sharp.js';
import type * as BrowserNativeEnv from './twins/native-env.js';
import type * as BrowserOciRef from './twins/oci-ref.js';
import type * as BrowserReference from './twins/reference.js';
import type * as BrowserVerify from './twins/verify.js';

type Same<Node, Browser extends Node> = Browser;

export type Checked = [
  Same<typeof NodePlatform, typeof BrowserPlatform>,
  Same<Pick<typeof NodeNativeEnv, 'nativeEnv'>, typeof BrowserNativeEnv>,
  Same<typeof NodeSharp, typeof BrowserSharp>,
  Same<typeof NodeDecoder, typeof BrowserDecoder>,
  Same<
    Pick<typeof NodeVerify, 'resolvePolicy' | 'verifyReader' | 'commitRollback' | 'policyFromStore' | 'verify'>,
    typeof BrowserVerify
  >,
  Same<
    { FileSource: { open(path: string): Promise<import('../pack/source.js').ByteSource> } },
    typeof BrowserFileSource
  >,
  Same<Pick<typeof NodeFileSource, never>, typeof BrowserFileSource>,
  Same<Pick<typeof NodeBackends, 'defaultRegistry' | 'BackendRegistry'>, typeof BrowserBackends>,
  Same<Pick<typeof NodeHost, 'resolveHost' | 'hostSummary' | 'devicesOf' | 'loadHostProfile'>, typeof BrowserHost>,
  // The ports differ (a MessagePort, shared rings): what is checked is that every function exists with its shape.
  Same<Record<keyof typeof NodeTransport, unknown>, typeof BrowserTransport>,
  Same<Pick<typeof NodeThread, 'liveSandboxThreads'>, typeof BrowserThread>,
  Same<{ isReference: (target: string) => boolean }, typeof BrowserOciRef>,
  Same<Pick<typeof NodeOciRef, never>, typeof BrowserOciRef>,
  Same<{ resolveReference: (reference: string) => Promise<unknown> }, typeof BrowserReference>,
  Same<Pick<typeof NodeReference, never>, typeof BrowserReference>,
  Same<Record<'compiledQuickJS' | 'spawnThread' | 'killThread', (...a: never[]) => unknown>, typeof BrowserThread>,
];
