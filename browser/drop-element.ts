/**
 * `<xpkg-drop>`: a drop zone other tools embed in a few lines. Dropping (or choosing) an `.xpkg`
 * fires a cancelable `xpkg-drop` first; if not cancelled the package is opened and verified in
 * place, firing `xpkg-manifest` (what it is, who signed it), `xpkg-progress` and `xpkg-verified`
 * (or `xpkg-error` with the code). Dropping an image on it then runs the package: `xpkg-result`.
 * The host element carries a `dragging` attribute while something is dragged over it (style it with
 * `xpkg-drop[dragging]`), a real labelled file input for keyboard users, and a one-line status
 * (part `status`, a live region).
 *
 * Attributes: `trust` (public key text; the `trust` property takes several), `allow-unsigned`.
 */
import { isImageFile } from './file-kind.js';
import { errorInfo, openPackage, type XpkgPackage } from './index.js';

const TEMPLATE = `
<style>
  :host { display: block; border: 2px dashed #6b7280; border-radius: 8px; padding: 1rem; }
  :host([dragging]) { border-color: #2563eb; background: #eff6ff; }
  label { cursor: pointer; text-decoration: underline; }
  input { position: absolute; width: 1px; height: 1px; opacity: 0; }
  input:focus-visible + label { outline: 2px solid #2563eb; }
</style>
<div part="zone"><slot>Drop an <code>.xpkg</code> package here, or </slot>
<input id="f" type="file" accept=".xpkg,image/*"><label for="f" part="pick">choose a file</label>
<p part="status" role="status" aria-live="polite"></p></div>`;

export class XpkgDropElement extends HTMLElement {
  /** Trusted public keys (text of `.pub` files); the `trust` attribute adds one. */
  trust: string[] = [];
  /** The package dropped last, once opened. */
  package: XpkgPackage | null = null;
  private depth = 0;
  /** Counts packages accepted: one that a later drop overtook while it opened is closed unseen. */
  private openings = 0;
  /** Settles once the package being opened is (or failed): an image dropped meanwhile waits, then runs it. */
  private opening: Promise<void> | null = null;
  /** What the package's verification failed with: an image dropped after that is refused with it, not run. */
  private failed: { code: string; summary: string; detail?: unknown } | null = null;

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = TEMPLATE;
    const input = root.querySelector('input')!;
    input.addEventListener('change', () => {
      const f = input.files?.[0];
      input.value = '';
      if (f) void this.accept(f);
    });
    this.addEventListener('dragenter', (e) => {
      e.preventDefault();
      if (this.depth++ === 0) this.setAttribute('dragging', '');
    });
    this.addEventListener('dragover', (e) => e.preventDefault());
    this.addEventListener('dragleave', () => {
      if (--this.depth <= 0) this.stopDragging();
    });
    this.addEventListener('drop', (e) => {
      e.preventDefault();
      this.stopDragging();
      const f = e.dataTransfer?.files?.[0];
      if (f) void this.accept(f);
    });
  }

  private stopDragging(): void {
    this.depth = 0;
    this.removeAttribute('dragging');
  }

  private emit(type: string, detail: unknown, cancelable = false): boolean {
    return this.dispatchEvent(new CustomEvent(type, { detail, cancelable, bubbles: true, composed: true }));
  }

  /** The element's own one-line account (part "status", a live region): what the events say. */
  private say(text: string): void {
    this.shadowRoot!.querySelector('[part="status"]')!.textContent = text;
  }

  /** A dropped or chosen file: a package is opened and verified; anything else runs the package on it. */
  async accept(file: File): Promise<void> {
    const image = await isImageFile(file).catch(() => false);
    while (image && !this.package && this.opening) await this.opening;
    if (image && this.package) return this.runOn(file);
    if (!this.emit('xpkg-drop', { file }, true)) return;
    const attr = this.getAttribute('trust');
    const options = {
      trust: [...this.trust, ...(attr ? [attr] : [])],
      allowUnsigned: this.hasAttribute('allow-unsigned'),
    };
    const ticket = ++this.openings;
    const latest = () => ticket === this.openings;
    let opened = false;
    let ready!: () => void;
    const settled = new Promise<void>((r) => (ready = r));
    this.opening = settled;
    const previous = this.package;
    this.package = null;
    this.failed = null;
    try {
      await previous?.close().catch(() => {});
      const pkg = await openPackage(file, options);
      if (!latest()) return void (await pkg.close().catch(() => {}));
      this.package = pkg;
      opened = true;
      ready();
      this.say(`${pkg.info.name} ${pkg.info.version}: verifying…`);
      this.emit('xpkg-manifest', pkg.info);
      const verified = await pkg.verify({ onProgress: (p) => latest() && this.emit('xpkg-progress', p) });
      if (!latest()) return;
      this.say(`${pkg.info.name} ${pkg.info.version}: ${verified.signatures.status}; drop an image to run it`);
      this.emit('xpkg-verified', verified);
    } catch (e) {
      if (!latest()) return; // a package dropped since speaks for the element now
      const err = errorInfo(e);
      if (opened) this.failed = err;
      this.say(`rejected: ${err.code}`);
      this.emit('xpkg-error', { stage: opened ? 'verify' : 'open', ...err });
    } finally {
      ready();
      if (this.opening === settled) this.opening = null;
    }
  }

  private async runOn(file: File): Promise<void> {
    const pkg = this.package!;
    const input = pkg.info.inspect.inputs.find((i) => i.type === 'image')?.name ?? pkg.info.inspect.inputs[0]?.name;
    // a package dropped since closed this one: its run's end (a result, or the close failing it) is not reported
    const current = () => this.package === pkg;
    if (this.failed) {
      this.say(`not run: the package did not verify (${this.failed.code})`);
      return void this.emit('xpkg-error', { stage: 'run', ...this.failed });
    }
    try {
      this.say(`running ${pkg.info.name} on ${file.name}…`);
      const result = await pkg.run(
        { [input]: file },
        { onProgress: (p) => current() && this.emit('xpkg-progress', p) },
      );
      if (!current()) return;
      this.say(`${pkg.info.name} ran on ${file.name} in ${Math.round(result.timings.total ?? 0)} ms`);
      this.emit('xpkg-result', { file, result });
    } catch (e) {
      if (!current()) return;
      const err = errorInfo(e);
      this.say(`run failed: ${err.code}`);
      this.emit('xpkg-error', { stage: 'run', ...err });
    }
  }
}

/** Registers `<xpkg-drop>` (once; another name can be given). */
export function defineXpkgDrop(name = 'xpkg-drop'): void {
  if (!customElements.get(name)) customElements.define(name, class extends XpkgDropElement {});
}
