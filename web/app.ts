/**
 * The drop page (served by `xpkg web`): drop or pick a package, see what it is and who signed it
 * at once, watch it verify, then drop an image and see the results drawn over it. Everything runs
 * through `xpkg/browser` in its worker; this file only renders. Results and errors are announced
 * in the live region #status for screen readers.
 */
import {
  type BrowserRunResult,
  errorInfo,
  isImageFile,
  openPackage,
  type Progress,
  preload,
  type XpkgPackage,
} from '../browser/index.js';
import { MESSAGES } from './messages.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $('status');
const trustBox = $<HTMLTextAreaElement>('trust');
const allowUnsigned = $<HTMLInputElement>('allow-unsigned');
let current: XpkgPackage | null = null;
/** Counts openings: an opening that a later one overtook (a slow URL, then a dropped file) is dropped. */
let openings = 0;
let lastImage: File | null = null;
/** The image last run (or running) on the current package: a second pick of it does not run it again. */
let ran: { pkg: XpkgPackage; file: File } | null = null;
/** Packages whose full verification failed, with what it said: they are not run, nor their results shown. */
const rejected = new WeakMap<XpkgPackage, { code: string; text: string }>();

function announce(text: string, kind: 'ok' | 'error' | 'info' = 'info'): void {
  status.textContent = text;
  status.dataset.kind = kind;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (n: number) =>
  n < 1024 ? `${n} B` : n < 2 ** 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;

/** An error's code and account; what is not an xpkg error (a DOMException's numeric code, null) is E_INTERNAL. */
function errorText(e: unknown): { code: string; text: string } {
  const { code, summary } = errorInfo(e);
  const human = MESSAGES[code as keyof typeof MESSAGES] ?? 'Unexpected error.';
  return { code, text: `${human} (${code}: ${summary})` };
}

function trustKeys(): string[] {
  // One key per `xpkg-ed25519-pub` line; comment lines above a key belong to it.
  return trustBox.value
    .split(/\n(?=(?:#[^\n]*\n)*xpkg-ed25519-pub )/)
    .map((k) => k.trim())
    .filter((k) => k.includes('xpkg-ed25519-pub'));
}

function showProgress(p: Progress): void {
  const bar = $<HTMLProgressElement>('progress');
  bar.hidden = false;
  bar.max = p.total || 1;
  bar.value = p.done;
  $('progress-label').textContent =
    `${p.phase === 'verify' ? 'Verifying' : `Loading ${p.path ?? 'model'}`}: ${fmt(p.done)} of ${fmt(p.total)}`;
}

async function openFile(input: File | string): Promise<void> {
  const ticket = ++openings;
  await current?.close().catch(() => {});
  current = null;
  $('package').hidden = true;
  $('run').hidden = true;
  $('verdict').textContent = '';
  clearResults(); // the last package's results are not shown under this one
  announce(`Opening ${typeof input === 'string' ? input : input.name}…`);
  let pkg: XpkgPackage;
  performance.mark('xpkg:page-open');
  // This page runs what it opens: onnxruntime-web starts now, beside the package's reads.
  preload({ runtime: true });
  try {
    pkg = await openPackage(input, { trust: trustKeys(), allowUnsigned: allowUnsigned.checked });
  } catch (e) {
    if (ticket !== openings) return; // another package was chosen meanwhile: its account stands
    const { code, text } = errorText(e);
    $('verdict').innerHTML = `<strong class="bad">Rejected</strong> <code data-code>${esc(code)}</code> ${esc(text)}`;
    announce(`Rejected: ${text}`, 'error');
    return;
  }
  if (ticket !== openings) {
    // another package was chosen while this one opened: the page shows that one, never this
    await pkg.close().catch(() => {});
    return;
  }
  current = pkg;
  renderPackage(pkg);
  performance.mark('xpkg:page-manifest');
  const sig = pkg.info.signatures;
  announce(
    `${pkg.info.name} ${pkg.info.version} opened in ${pkg.info.ms.toFixed(0)} ms (${fmt(pkg.info.bytesRead)} read). Verifying…`,
  );
  try {
    if (!sig.ok) throw Object.assign(new Error(sig.error.summary), { code: sig.error.code });
    // Models load (each block verified as read) while the whole package verifies; a failure shows on run.
    if (pkg.info.inspect.inputs.some((x) => x.type === 'image')) void pkg.prepare().catch(() => {});
    // A signed, trusted manifest is enough to run: a run reads only verified bytes (its models'
    // blocks against the signed digests), as `xpkg run` does, so an image waiting runs now, and the
    // rest of the package (GPU variants included) is hashed after it rather than beside it on the
    // same cores and connection. Should the whole package then fail to verify, the results are taken down.
    $('run').hidden = false;
    if (lastImage) await runImage(lastImage);
    if (pkg !== current) return; // another package was opened meanwhile
    const v = await pkg.verify({ onProgress: showProgress });
    if (pkg !== current) return;
    const who = v.signatures.signers.map((s) => s.keyid.slice(0, 16)).join(', ');
    // Intact but unsigned or untrusted (accepted only when asked) is said as such, never as verified.
    const status = v.signatures.status;
    $('verdict').innerHTML =
      `<strong class="${status === 'verified' ? 'good' : 'warn'}" data-verdict="${esc(status)}">${status === 'verified' ? 'Verified' : `Intact, ${esc(status)}`}</strong> ` +
      `${v.integrity.files} files, ${fmt(v.integrity.bytes)} in ${v.integrity.ms.toFixed(0)} ms${who ? `; signed by ${esc(who)}…` : ''}`;
    announce(
      `${pkg.info.name} is ${v.signatures.status === 'verified' ? 'verified' : v.signatures.status}. Choose an image to run it.`,
      'ok',
    );
    performance.mark('xpkg:page-verified');
  } catch (e) {
    const { code, text } = errorText(e);
    rejected.set(pkg, { code, text });
    if (pkg !== current) return; // a package closed because another was opened: nothing of it to show
    $('run').hidden = true;
    clearResults();
    $('verdict').innerHTML =
      `<strong class="bad" data-verdict="failed">Not verified</strong> <code data-code>${esc(code)}</code> ${esc(text)}`;
    announce(`Not verified: ${text}`, 'error');
  } finally {
    $('progress').hidden = true;
    $('progress-label').textContent = '';
  }
}

/** Takes down the results, timings and picture of a run. */
function clearResults(): void {
  $('results').innerHTML = '';
  $('timings').textContent = '';
  const canvas = $<HTMLCanvasElement>('canvas');
  canvas.width = 0;
  canvas.height = 0;
}

function renderPackage(pkg: XpkgPackage): void {
  const i = pkg.info.inspect;
  $('pkg-name').textContent = `${i.name} ${i.version}`;
  $('pkg-meta').innerHTML =
    `${esc(i.description ?? '')}<br><span>id <code>${i.id.slice(0, 16)}…</code> · ${fmt(i.size)} · ${esc(i.license)} · task ${esc(i.task)}</span>`;
  $('variants').innerHTML = i.models
    .flatMap((m) =>
      m.variants.map(
        (v) =>
          `<tr><td>${esc(m.id)}</td><td>${esc(v.id)}</td><td>${esc(v.runtime)} ${esc(v.precision)}</td><td>${fmt(v.bytes)}</td><td>${esc(JSON.stringify(v.requires))}</td></tr>`,
      ),
    )
    .join('');
  $('files').innerHTML = i.files
    .map((f) => `<tr><td>${esc(f.path)}</td><td>${fmt(f.size)}</td><td>${f.stored}</td></tr>`)
    .join('');
  const s = pkg.info.signatures;
  $('signers').innerHTML = s.ok
    ? `${s.status === 'verified' ? 'Trusted signers' : `Signatures: ${esc(s.status)}`}: ${
        s.signers.map((x) => `<code>${x.keyid.slice(0, 16)}…</code>`).join(', ') || 'none'
      }${s.untrusted.length ? `; untrusted: ${s.untrusted.map((k) => `<code>${k.slice(0, 16)}…</code>`).join(', ')}` : ''}`
    : `Key ids in the package: ${i.signatures.keyids.map((k) => `<code>${k.slice(0, 16)}…</code>`).join(', ') || 'none'}`;
  $('package').hidden = false;
}

async function runImage(file: File): Promise<void> {
  lastImage = file;
  if (!current) return;
  const pkg = current;
  if (ran?.pkg === pkg && ran.file === file) return;
  // An image dropped on a package that failed to verify is not run: its verdict is said again.
  const refused = rejected.get(pkg);
  if (refused) return announce(`Not run: the package did not verify. ${refused.text}`, 'error');
  const input = pkg.info.inspect.inputs.find((x) => x.type === 'image')?.name;
  if (!input) return announce('This package takes no image input.', 'error');
  ran = { pkg, file };
  performance.mark('xpkg:page-run-start');
  announce(`Running ${pkg.info.name} on ${file.name}…`);
  let r: BrowserRunResult;
  try {
    r = await pkg.run({ [input]: file }, { onProgress: showProgress });
  } catch (e) {
    if (ran?.file === file) ran = null; // picking the image again tries again
    if (pkg !== current || file !== lastImage) return; // another package or image was chosen meanwhile
    const { code, text } = errorText(e);
    clearResults(); // the picture and timings of the image run before are not left under this one's error
    $('results').innerHTML = `<p class="bad"><code data-code>${esc(code)}</code> ${esc(text)}</p>`;
    return announce(`Run failed: ${text}`, 'error');
  } finally {
    $('progress').hidden = true;
    $('progress-label').textContent = '';
  }
  if (rejected.has(pkg) || pkg !== current) return;
  performance.mark('xpkg:page-ran');
  if (file !== lastImage) return; // another image was chosen while this one ran: its results show
  try {
    await show(pkg, file, r);
  } catch (e) {
    // the results could not be drawn (an image the page cannot decode, say): said, not left at "Running…"
    const { code, text } = errorText(e);
    clearResults();
    $('results').innerHTML = `<p class="bad"><code data-code>${esc(code)}</code> ${esc(text)}</p>`;
    announce(`Run failed: ${text}`, 'error');
  }
}

/** Draws a run's results over its image and lists them. */
async function show(pkg: XpkgPackage, file: File, r: BrowserRunResult): Promise<void> {
  const bitmap = await createImageBitmap(file);
  if (file !== lastImage || pkg !== current) return;
  const canvas = $<HTMLCanvasElement>('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext('2d')!;
  ctx.drawImage(bitmap, 0, 0);
  const lines = draw(ctx, r.outputs);
  $('results').innerHTML = lines.length
    ? `<ol>${lines.map((l) => `<li>${esc(l)}</li>`).join('')}</ol>`
    : '<p>No results.</p>';
  const t = r.timings;
  $('timings').textContent = `${Object.entries(t)
    .map(([k, v]) => `${k} ${v.toFixed(1)} ms`)
    .join(
      ' · ',
    )} · ${r.runtime?.threads ?? 1} thread(s)${r.runtime?.crossOriginIsolated ? ' (isolated page)' : ''}${loadTimes(r)}`;
  announce(`${lines.length} result(s): ${lines.slice(0, 5).join('; ')}`, 'ok');
}

/** What starting the runtime and loading each model took (read and verified + session created). */
function loadTimes(r: BrowserRunResult): string {
  if (!r.runtime) return '';
  const loads = Object.entries(r.runtime.loads).map(
    ([v, t]) => ` · load ${v} ${t.readMs.toFixed(0)} + ${t.createMs.toFixed(0)} ms`,
  );
  return ` · runtime start ${r.runtime.startMs.toFixed(0)} ms${loads.join('')}`;
}

const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
/** The most pixels a mask drawn over the image may have (a package's outputs are its own to shape). */
const MAX_MASK = 64 * 2 ** 20;

/** A label mask ({width, height, data[, labels]}) the canvas can take, or null. */
function maskOf(v: unknown): { width: number; height: number; data: ArrayLike<number>; labels?: unknown } | null {
  if (!v || typeof v !== 'object' || Array.isArray(v) || !('width' in v) || !('data' in v)) return null;
  const m = v as { width: unknown; height?: unknown; data: unknown; labels?: unknown };
  const { width: w, height: h, data } = m;
  if (!Number.isSafeInteger(w) || !Number.isSafeInteger(h) || (w as number) < 1 || (h as number) < 1) return null;
  if ((w as number) * (h as number) > MAX_MASK) return null;
  const d = data as { length?: unknown } | null;
  if (!d || typeof d !== 'object' || !num(d.length) || d.length < (w as number) * (h as number)) return null;
  return m as { width: number; height: number; data: ArrayLike<number>; labels?: unknown };
}

/** A box as corner points: [x1, y1, x2, y2] or [[x, y], …] with finite numbers, else null. */
function pointsOf(box: unknown): [number, number][] | null {
  if (!Array.isArray(box) || box.length === 0) return null;
  if (box.every((p) => Array.isArray(p) && p.length === 2 && num(p[0]) && num(p[1]))) return box;
  if (box.length !== 4 || !box.every(num)) return null;
  const [x1, y1, x2, y2] = box;
  return [
    [x1, y1],
    [x2, y1],
    [x2, y2],
    [x1, y2],
  ];
}

/**
 * Draws every output the picture can show and returns one text line per result. What a package's
 * outputs hold is its own (a script's `json` output can be anything): what is not a mask or a box
 * is left out, never drawn half.
 */
function draw(ctx: CanvasRenderingContext2D, outputs: Record<string, unknown>): string[] {
  const text: string[] = [];
  ctx.lineWidth = Math.max(2, ctx.canvas.width / 400);
  ctx.font = `${Math.max(12, ctx.canvas.width / 60)}px sans-serif`;
  for (const value of Object.values(outputs)) {
    const m = maskOf(value);
    if (m) {
      const img = ctx.createImageData(m.width, m.height);
      const seen = new Set<number>();
      for (let k = 0; k < m.width * m.height; k++) {
        const l = Number(m.data[k]);
        if (!l || !Number.isFinite(l)) continue;
        seen.add(l);
        img.data.set([(l * 97) % 255, (l * 57) % 255, (l * 151) % 255, 110], k * 4);
      }
      const layer = new OffscreenCanvas(m.width, m.height);
      layer.getContext('2d')!.putImageData(img, 0, 0);
      ctx.drawImage(layer, 0, 0, ctx.canvas.width, ctx.canvas.height);
      const labels = Array.isArray(m.labels) ? m.labels : [];
      text.push(`mask: ${[...seen].map((l) => String(labels[l] ?? l)).join(', ')}`);
      continue;
    }
    if (!Array.isArray(value)) continue;
    for (const item of value as unknown[]) {
      if (!item || typeof item !== 'object') continue;
      const {
        text: t,
        label: name,
        score,
        box,
      } = item as { text?: unknown; label?: unknown; score?: unknown; box?: unknown };
      const pts = pointsOf(box);
      if (!pts) continue;
      ctx.strokeStyle = t !== undefined ? '#16a34a' : '#dc2626';
      ctx.beginPath();
      pts.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
      ctx.stroke();
      const label =
        t !== undefined ? String(t) : `${String(name ?? '?')} ${((num(score) ? score : 0) * 100).toFixed(0)}%`;
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fillText(label, pts[0][0], Math.max(12, pts[0][1] - 4));
      text.push(label);
    }
  }
  return text;
}

function route(file: File): void {
  if (/\.pub$/i.test(file.name)) {
    void file.text().then((t) => {
      trustBox.value = `${trustBox.value.trim()}\n${t}`.trim();
      announce(`Trusted key added from ${file.name}.`, 'ok');
    });
  } else
    void isImageFile(file).then(
      (image) => (image ? runImage(file) : openFile(file)),
      () => openFile(file),
    );
}

/** A picker's file, the picker then emptied: choosing the same file again (after a drop, or to retry a failed run) is a change. */
function picked(e: Event): File | undefined {
  const input = e.target as HTMLInputElement;
  const f = input.files?.[0];
  input.value = '';
  return f;
}
$<HTMLInputElement>('pkg-file').addEventListener('change', (e) => {
  const f = picked(e);
  if (f) void openFile(f);
});
$<HTMLInputElement>('image-file').addEventListener('change', (e) => {
  const f = picked(e);
  if (f) void runImage(f);
});
document.addEventListener('dragover', (e) => {
  e.preventDefault();
  document.body.classList.add('dragging');
});
document.addEventListener('dragleave', (e) => {
  if (!e.relatedTarget) document.body.classList.remove('dragging');
});
document.addEventListener('drop', (e) => {
  e.preventDefault();
  document.body.classList.remove('dragging');
  for (const f of e.dataTransfer?.files ?? []) route(f);
});

performance.mark('xpkg:page-script');
// The worker starts while the page asks for its configuration and the user picks a file (and
// the runtime too when the URL names a package to open).
preload({ runtime: new URLSearchParams(location.search).has('package') });
// `xpkg web --trust key.pub` hands its keys to the page; `?package=URL` opens one by URL.
void fetch('config.json')
  .then((r) => (r.ok ? r.json() : null))
  .then((c: { trust?: string[] } | null) => {
    if (c?.trust?.length) trustBox.value = c.trust.join('\n');
  })
  .catch(() => {})
  .finally(() => {
    const url = new URLSearchParams(location.search).get('package');
    if (url) void openFile(url);
  });
