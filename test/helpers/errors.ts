/** The error code a promise rejects with ('OK' when it resolves): tests assert codes, never messages. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code ?? `not an XpkgError: ${String(e)}`;
  }
  return 'OK';
}

/** The code a synchronous call throws (null when it returns), asserting the error's class. */
export function syncCodeOf(f: () => unknown, expected: abstract new (...a: never[]) => Error): string | null {
  try {
    f();
    return null;
  } catch (e) {
    if (!(e instanceof expected)) throw e;
    return (e as Error & { code: string }).code;
  }
}
