import type { Command } from 'commander';
import { action, portOption } from '../framework.js';

interface WebOpts {
  host?: string;
  port?: string;
  packages?: string;
  trust?: string[];
  isolation?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('web')
    .description('serve the drop page: open, verify and run packages in a browser, in place (Ctrl-C stops)')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', '8080')
    .option('--packages <dir>', 'also serve the .xpkg files of a folder under /packages/ (range requests)')
    .option('--trust <key.pub...>', 'public keys the page trusts from the start')
    .option('--no-isolation', 'serve without COOP/COEP (onnxruntime-web then uses one thread)')
    .option('--json', 'print one JSON document {"result": {"url"}} on stdout once listening');
  action<[], WebOpts>(cmd, async (io, opts) => {
    const port = portOption(opts.port, 'port') ?? 8080;
    const [{ startWebServer }, { readPublicKeyFile }] = await Promise.all([
      import('../../web/server.js'),
      import('../../signing/trust.js'),
    ]);
    // each --trust must be a public key (E_KEY_FORMAT otherwise): the page serves these texts to any
    // visitor as /web/config.json, and a .key file given by mistake would publish the secret seed.
    // A small regular file (E_TRUST_STORE otherwise): `--trust /dev/zero` was read without end.
    const trust = await Promise.all((opts.trust ?? []).map(readPublicKeyFile));
    const server = await startWebServer({
      host: opts.host ?? '127.0.0.1',
      port,
      ...(opts.packages !== undefined ? { packages: opts.packages } : {}),
      trust,
      isolation: opts.isolation !== false,
    });
    // Announced as soon as it listens (the command runs until stopped).
    if (io.json) process.stdout.write(`${JSON.stringify({ result: { url: server.url } })}\n`);
    else process.stdout.write(`xpkg web: ${server.url}\n`);
    io.log('Ctrl-C stops the server');
    await new Promise<void>((resolve) => {
      for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => resolve());
    });
    await server.close();
    return { result: { url: server.url }, human: '', streamed: true };
  });
}
