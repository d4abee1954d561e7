/**
 * Browser twin of sandbox/transport.ts. A browser has no receiveMessageOnPort: a worker blocked in
 * Atomics.wait cannot take a postMessage. So each direction of the channel is a ring of messages in
 * a SharedArrayBuffer (a cross-origin-isolated page has them), taken synchronously by the other
 * side exactly as Node's port is; protocol.ts's counters and waits stay as they are.
 */

/** One direction: a byte ring, with the bytes written and read so far (they only grow). */
interface Ring {
  meta: SharedArrayBuffer;
  data: SharedArrayBuffer;
}

/** One end of the channel (plain shared buffers: it is posted to the worker as it is). */
export interface Port {
  out: Ring;
  in: Ring;
}

const BIN = '\u0000b';
const NUM = '\u0000n';

/** JSON with typed byte arrays beside it (and non-finite numbers kept): what the messages hold. */
function encode(msg: unknown): Uint8Array {
  const bins: Uint8Array[] = [];
  const json = new TextEncoder().encode(
    JSON.stringify(msg, (_k, v: unknown) => {
      if (v instanceof Uint8Array) return { [BIN]: bins.push(v) - 1 };
      if (typeof v === 'number' && !Number.isFinite(v)) return { [NUM]: String(v) };
      return v;
    }),
  );
  const size = 8 + json.length + bins.reduce((n, b) => n + 4 + b.length, 0);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, json.length, true);
  out.set(json, 4);
  let at = 4 + json.length;
  dv.setUint32(at, bins.length, true);
  at += 4;
  for (const b of bins) {
    dv.setUint32(at, b.length, true);
    out.set(b, at + 4);
    at += 4 + b.length;
  }
  return out;
}

function decode(bytes: Uint8Array): unknown {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonLength = dv.getUint32(0, true);
  const json = new TextDecoder().decode(bytes.subarray(4, 4 + jsonLength));
  const count = dv.getUint32(4 + jsonLength, true);
  let at = 8 + jsonLength;
  const bins: Uint8Array[] = [];
  for (let k = 0; k < count; k++) {
    const len = dv.getUint32(at, true);
    bins.push(bytes.slice(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return JSON.parse(json, (_k, v: unknown) => {
    if (v && typeof v === 'object' && BIN in v) return bins[(v as Record<string, number>)[BIN]];
    if (v && typeof v === 'object' && NUM in v) return Number((v as Record<string, string>)[NUM]);
    return v;
  });
}

function views(r: Ring): { meta: BigInt64Array; data: Uint8Array } {
  return { meta: new BigInt64Array(r.meta), data: new Uint8Array(r.data) };
}

function copyIn(data: Uint8Array, at: number, bytes: Uint8Array): void {
  const first = Math.min(bytes.length, data.length - at);
  data.set(bytes.subarray(0, first), at);
  data.set(bytes.subarray(first), 0);
}

function copyOut(data: Uint8Array, at: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const first = Math.min(length, data.length - at);
  out.set(data.subarray(at, at + first));
  out.set(data.subarray(0, length - first), first);
  return out;
}

/** A channel whose rings hold `capacity` bytes each; [host end, worker end]. */
export function channel(capacity: number): [Port, Port] {
  const ring = (): Ring => ({ meta: new SharedArrayBuffer(16), data: new SharedArrayBuffer(capacity) });
  const a = ring();
  const b = ring();
  return [
    { out: a, in: b },
    { out: b, in: a },
  ];
}

export function postTo(port: Port, msg: unknown, _transfer?: ArrayBuffer[]): void {
  const { meta, data } = views(port.out);
  const body = encode(msg);
  const head = new Uint8Array(4);
  new DataView(head.buffer).setUint32(0, body.length, true);
  const written = Atomics.load(meta, 0);
  if (Number(written - Atomics.load(meta, 1)) + 4 + body.length > data.length)
    throw new Error(`sandbox channel full (${body.length} bytes to post)`);
  const at = Number(written % BigInt(data.length));
  copyIn(data, at, head);
  copyIn(data, (at + 4) % data.length, body);
  // Published after the bytes: the reader sees the new count only once they are in place.
  Atomics.store(meta, 0, written + BigInt(4 + body.length));
}

export function take(port: Port): { message: unknown } | undefined {
  const { meta, data } = views(port.in);
  const read = Atomics.load(meta, 1);
  if (Atomics.load(meta, 0) === read) return undefined;
  const at = Number(read % BigInt(data.length));
  const length = new DataView(copyOut(data, at, 4).buffer).getUint32(0, true);
  const body = copyOut(data, (at + 4) % data.length, length);
  Atomics.store(meta, 1, read + BigInt(4 + length));
  return { message: decode(body) };
}

export function hardwareThreads(): number {
  return Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1);
}

let start: unknown;
/** Set by the sandbox worker's entry (browser/sandbox-worker.ts) before the worker module loads. */
export function setStartData(data: unknown): void {
  start = data;
}

export function startData(): unknown {
  return start;
}
