/**
 * Where a key passphrase comes from: `XPKG_PASSPHRASE`, else a hidden prompt on the terminal.
 * Never from a command-line argument (it would land in shell history and `ps`).
 */
import { SigningError } from '../spec/errors.js';

export const PASSPHRASE_ENV = 'XPKG_PASSPHRASE';

export interface PassphraseRequest {
  /** Ask twice and compare (new keys). */
  confirm?: boolean;
  /** Prompt text. */
  prompt?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * One line ending at the end of `XPKG_PASSPHRASE`: a secret mounted from a file (a Kubernetes secret
 * made with `--from-file`, an editor's last newline) often carries one. It is not part of the
 * passphrase, as for gpg's `--passphrase-file` (its first line): the terminal prompt can never type
 * it (Enter ends the line), so a key made with it could be opened only from that variable.
 */
const LINE_END = /\r?\n$/;

/** `XPKG_PASSPHRASE` as it is set, when that differs from the passphrase read from it (a line ending dropped). */
export function passphraseAsSet(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = env[PASSPHRASE_ENV];
  return v !== undefined && LINE_END.test(v) ? v : undefined;
}

export async function obtainPassphrase(req: PassphraseRequest = {}): Promise<string> {
  const env = req.env ?? process.env;
  const set = env[PASSPHRASE_ENV];
  if (set !== undefined) {
    const fromEnv = set.replace(LINE_END, '');
    if (fromEnv === '') throw new SigningError('E_KEY_PASSPHRASE', `${PASSPHRASE_ENV} is set but empty`);
    return fromEnv;
  }
  if (!process.stdin.isTTY) {
    throw new SigningError(
      'E_KEY_PASSPHRASE',
      `no passphrase: set ${PASSPHRASE_ENV}, run in a terminal, or (keygen only) use --no-passphrase`,
    );
  }
  const first = await promptHidden(req.prompt ?? 'Passphrase: ');
  if (first === '') throw new SigningError('E_KEY_PASSPHRASE', 'empty passphrase');
  if (req.confirm) {
    const again = await promptHidden('Passphrase again: ');
    if (again !== first) throw new SigningError('E_KEY_PASSPHRASE', 'the two passphrases differ');
  }
  return first;
}

/** Reads one line from the TTY in raw mode without echoing it. */
function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (err: Error | null) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(buf);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return done(null);
        if (ch === '\u0003') return done(new SigningError('E_KEY_PASSPHRASE', 'cancelled'));
        if (ch === '\u007f' || ch === '\b') buf = Array.from(buf).slice(0, -1).join('');
        else if (ch >= ' ') buf += ch;
      }
    };
    stdin.on('data', onData);
  });
}
