/**
 * The command table. Order is the order `xpkg --help` lists them in. Every command is registered at
 * start (names, flags, help), so a command module imports only commander, the framework and types at
 * its top, and its implementation inside the action: a command loads only what it runs.
 */
import type { Command } from 'commander';
import { register as explain } from './explain.js';
import { register as gpu } from './gpu.js';
import { register as host } from './host.js';
import { register as inspect } from './inspect.js';
import { register as keygen } from './keygen.js';
import { register as oci } from './oci.js';
import { register as pack } from './pack.js';
import { register as peers } from './peers.js';
import { register as run } from './run.js';
import { register as serve } from './serve.js';
import { register as sign } from './sign.js';
import { register as split } from './split.js';
import { register as unpack } from './unpack.js';
import { register as verify } from './verify.js';
import { register as web } from './web.js';

export const commands: ((program: Command) => void)[] = [
  run,
  pack,
  inspect,
  keygen,
  sign,
  verify,
  unpack,
  host,
  explain,
  gpu,
  serve,
  peers,
  oci,
  web,
  split,
];
