/**
 * A fetch response's body read up to a cap: a peer streaming without end (or declaring more than
 * the cap) must not fill the device's memory. Past the cap the rest is not read (the stream is
 * cancelled) and the answer is undefined; each caller says what that means in its own terms.
 */
export async function bodyUpTo(res: Response, max: number): Promise<Buffer | undefined> {
  if (Number(res.headers.get('content-length')) > max) {
    await res.body?.cancel().catch(() => {});
    return undefined;
  }
  if (!res.body) return Buffer.alloc(0);
  const parts: Uint8Array[] = [];
  let n = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.byteLength;
    if (n > max) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    parts.push(value);
  }
  return Buffer.concat(parts, n);
}
