/** `xpkg host [--json] [--host <file>]`: what this machine offers to variant selection. */
import type { Command } from 'commander';
import type { HostProfile } from '../../runner/host.js';
import { action, type CommandOutcome, type Io } from '../framework.js';

export interface HostCommandOptions {
  json?: boolean;
  /** A host profile file (or JSON text) to show instead of detecting; XPKG_HOST does the same. */
  host?: string;
}

export async function hostCommand(_io: Io, opts: HostCommandOptions): Promise<CommandOutcome<HostProfile>> {
  const injected = opts.host ?? process.env.XPKG_HOST;
  const { resolveHost, renderHost } = await import('../../runner/host.js');
  const profile = await resolveHost({ ...(opts.host !== undefined ? { host: opts.host } : {}) });
  const head = injected ? `host profile from ${opts.host !== undefined ? '--host' : 'XPKG_HOST'} (not detected)\n` : '';
  return { result: profile, human: head + renderHost(profile) };
}

export function register(program: Command): void {
  const cmd = program
    .command('host')
    .description('show what xpkg detects here: OS, CPU features, GPUs, NPUs and usable runtimes')
    .option('--json', 'print the host profile as JSON')
    .option('--host <file>', 'show a host profile file instead of detecting (same as XPKG_HOST)');
  action<[], HostCommandOptions>(cmd, hostCommand);
}
