/** The error code a promise rejects with ('OK' when it resolves): tests assert codes, never messages. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code ?? `not an XpkgError: ${String(e)}`;
  }
  return 'OK';
}
