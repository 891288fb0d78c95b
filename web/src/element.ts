// <onestep-upscaler>: a drop-in upscaler. Drop, paste or choose an image, press Upscale; it
// runs in a worker (WebGPU, or the CPU fallback) with progress and Cancel, shows a
// before/after compare view and offers the PNG. Also a form control (its value is the result
// File) and a scriptable element:
//
//   <script type="module" src="onestep-upscaler.js"></script>
//   <onestep-upscaler model="realesrgan-x4plus" name="photo"></onestep-upscaler>
//   const png = await el.upscale(file, { signal });   // a PNG Blob
//
// Attributes (and properties): model (a catalog id such as realesrgan-x4plus,
// realesrgan-x4plus-anime or realesr-animevideov3-x2 / -x3 / -x4, or a manifest URL), catalog
// (models.json; default: the one beside this script), scale (below the model's own scale;
// a larger one gives the model's), lambda-pix, lambda-sem, color-fix, disabled.
// Events (bubbling, composed): upscale-start, upscale-progress { stage, done, total, eta,
// fraction, text }, upscale-complete (detail: the PNG Blob), upscale-error { message },
// upscale-cancel. Parts: drop-zone, toolbar, progress, compare. Colours: --onestep-accent,
// --onestep-fg, --onestep-bg, --onestep-border, --onestep-muted, --onestep-focus, --onestep-error.
import { type CatalogEntry, defaultEntry, effectiveScale, fallbackCatalog, loadCatalog, outputName, resolveModel } from './catalog';
import { inspectImage } from './client';
import { COMPARE_CSS, CompareView } from './compare';
import { Session, cancelled, isCancel, progressReporter, type Progress } from './session';

const STYLE = `
:host { display: block; color: var(--onestep-fg, #1b1f23); background: var(--onestep-bg, transparent);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
:host([hidden]) { display: none; }
:host([disabled]) { opacity: .6; }
* { box-sizing: border-box; }
.wrap { display: flex; flex-direction: column; gap: .6em; min-width: 0; }
.drop { border: 2px dashed var(--onestep-border, #9aa3ad); border-radius: 8px; padding: 1em; text-align: center; }
.drop.over { border-color: var(--onestep-accent, #1a73e8); background: color-mix(in srgb, var(--onestep-accent, #1a73e8) 8%, transparent); }
.drop label { color: var(--onestep-accent, #1a73e8); text-decoration: underline; cursor: pointer; font-weight: 600; }
.drop input { position: absolute; width: 1px; height: 1px; opacity: 0; overflow: hidden; }
.drop:focus-within { outline: 3px solid var(--onestep-focus, #1a73e8); outline-offset: 2px; }
.file { color: var(--onestep-muted, #5f6b76); overflow-wrap: anywhere; }
.bar { display: flex; flex-wrap: wrap; gap: .5em; align-items: center; }
button, .dl { font: inherit; min-height: 2.4em; padding: .3em 1em; border-radius: 6px; border: 1px solid var(--onestep-border, #9aa3ad);
  background: var(--onestep-bg, #fff); color: var(--onestep-fg, #1b1f23); cursor: pointer; text-decoration: none; display: inline-flex; align-items: center; }
button.primary, .dl { background: var(--onestep-accent, #1a73e8); border-color: var(--onestep-accent, #1a73e8); color: #fff; font-weight: 600; }
button:disabled { opacity: .5; cursor: default; }
button:focus-visible, .dl:focus-visible, a:focus-visible { outline: 3px solid var(--onestep-focus, #1a73e8); outline-offset: 2px; }
.progress { display: flex; flex-direction: column; gap: .25em; }
progress { width: 100%; height: .7em; accent-color: var(--onestep-accent, #1a73e8); }
.msg { min-height: 1.45em; overflow-wrap: anywhere; }
.msg.error { color: var(--onestep-error, #b3261e); }
${COMPARE_CSS}
`;

const ATTRS = ['model', 'catalog', 'scale', 'lambda-pix', 'lambda-sem', 'color-fix', 'disabled'] as const;

type Input = File | Blob | ImageBitmap | ImageData;

function defaultCatalogUrl(): string {
  try { return new URL('models.json', import.meta.url).href; } catch { return new URL('models.json', location.href).href; }
}

export class OnestepUpscaler extends HTMLElement {
  static formAssociated = true;
  static observedAttributes = [...ATTRS];

  private root: ShadowRoot;
  private internals: ElementInternals | null;
  private session = new Session();
  private catalogPromise: Promise<CatalogEntry[]> | null = null;
  private controller: AbortController | null = null;
  private picked: Input | null = null;
  private pickedName = 'image';
  private result: File | null = null;
  private compare: CompareView;
  private downloadUrl = '';
  private q = <T extends Element>(s: string) => this.root.querySelector(s) as T;

  constructor() {
    super();
    this.root = this.attachShadow({ mode: 'open', delegatesFocus: false });
    this.internals = typeof this.attachInternals === 'function' ? this.attachInternals() : null;
    this.root.innerHTML = `<style>${STYLE}</style>
      <div class="wrap">
        <div class="drop" part="drop-zone">
          <label>Choose image<input type="file" accept="image/*"></label> or drop / paste one here
          <div class="file" aria-live="polite"></div>
        </div>
        <div class="bar" part="toolbar" role="toolbar" aria-label="Upscaler">
          <button type="button" class="primary go" disabled>Upscale</button>
          <button type="button" class="cancel" hidden>Cancel</button>
          <a class="dl" hidden>Download</a>
          <span class="model"></span>
        </div>
        <div class="progress" part="progress">
          <progress max="1" value="0" hidden aria-label="Progress"></progress>
          <div class="msg" role="status" aria-live="polite"></div>
        </div>
      </div>`;
    this.compare = new CompareView(document, { part: 'compare', emptyText: 'The image and its upscaled version appear here.' });
    this.q('.wrap').append(this.compare.el);

    const input = this.q<HTMLInputElement>('input[type=file]');
    input.addEventListener('change', () => { const f = input.files?.[0]; if (f) this.pick(f); input.value = ''; });
    const drop = this.q<HTMLElement>('.drop');
    drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      const f = [...(e.dataTransfer?.files ?? [])].find((f) => f.type.startsWith('image/')) ?? e.dataTransfer?.files?.[0];
      if (f) this.pick(f);
    });
    this.q('.go').addEventListener('click', () => {
      if (this.picked) this.upscale(this.picked).catch(() => { /* reported by events and the status line */ });
    });
    this.q('.cancel').addEventListener('click', () => this.cancel());
  }

  // Attributes and properties.
  get model() { return this.getAttribute('model') ?? ''; }
  set model(v: string) { this.setAttribute('model', v); }
  get catalog() { return this.getAttribute('catalog') ?? ''; }
  set catalog(v: string) { this.setAttribute('catalog', v); }
  get scale(): number | null { return num(this.getAttribute('scale')); }
  set scale(v: number | null) { setNum(this, 'scale', v); }
  get lambdaPix(): number | null { return num(this.getAttribute('lambda-pix')); }
  set lambdaPix(v: number | null) { setNum(this, 'lambda-pix', v); }
  get lambdaSem(): number | null { return num(this.getAttribute('lambda-sem')); }
  set lambdaSem(v: number | null) { setNum(this, 'lambda-sem', v); }
  get colorFix(): string | null { return this.getAttribute('color-fix'); }
  set colorFix(v: string | null) { if (v == null) this.removeAttribute('color-fix'); else this.setAttribute('color-fix', v); }
  get disabled() { return this.hasAttribute('disabled'); }
  set disabled(v: boolean) { this.toggleAttribute('disabled', Boolean(v)); }
  /** The last result as a File (`photo_x4.png`), or null. Also the element's form value. */
  get value(): File | null { return this.result; }
  get form() { return this.internals?.form ?? null; }
  get name() { return this.getAttribute('name'); }
  get type() { return this.localName; }
  /** Whether an upscale is running. */
  get busy() { return this.controller !== null; }

  connectedCallback() {
    // Properties set on the element before it was upgraded.
    for (const p of ['model', 'catalog', 'scale', 'lambdaPix', 'lambdaSem', 'colorFix', 'disabled'] as const) {
      if (Object.prototype.hasOwnProperty.call(this, p)) {
        const v = (this as any)[p];
        delete (this as any)[p];
        (this as any)[p] = v;
      }
    }
    document.addEventListener('paste', this.onPaste);
    this.sync();
    this.showModel();
  }

  disconnectedCallback() {
    document.removeEventListener('paste', this.onPaste);
  }

  attributeChangedCallback(name: string, old: string | null, value: string | null) {
    if (old === value) return;
    if (name === 'catalog') this.catalogPromise = null;
    if (name === 'model' || name === 'catalog') this.showModel();
    this.sync();
  }

  formResetCallback() {
    this.result = null;
    this.internals?.setFormValue(null);
    this.compare.setAfter(null);
    this.q<HTMLElement>('.dl').hidden = true;
  }

  formDisabledCallback(disabled: boolean) { this.toggleAttribute('disabled', disabled); }

  /** Upscales a File, Blob, ImageBitmap or ImageData; resolves to a PNG Blob. */
  async upscale(input: Input, opts: { signal?: AbortSignal } = {}): Promise<Blob> {
    if (this.disabled) throw new Error('the upscaler is disabled');
    if (this.controller) throw new Error('busy: an upscale is already running; cancel it first');
    if (!input) throw new Error('nothing to upscale: pass a File, Blob, ImageBitmap or ImageData');
    const controller = new AbortController();
    this.controller = controller;
    const outer = opts.signal;
    const onOuter = () => controller.abort();
    if (outer?.aborted) controller.abort(); else outer?.addEventListener('abort', onOuter, { once: true });
    const name = input instanceof File ? input.name : this.picked === input ? this.pickedName : 'image.png';
    this.sync();
    this.emit('upscale-start', { name, model: this.model });
    this.say('Starting…');
    const bar = this.q<HTMLProgressElement>('progress');
    bar.hidden = false;
    bar.value = 0;
    const onProgress = (p: Progress) => {
      bar.value = p.fraction;
      this.say(p.text);
      this.emit('upscale-progress', { stage: p.stage, done: p.done, total: p.total, eta: p.eta, fraction: p.fraction, text: p.text });
    };
    const t0 = performance.now();
    try {
      // Before any decode or download: an image the engine would refuse stops here.
      await inspectImage(input);
      if (input !== this.picked) { this.picked = input; this.pickedName = name; this.compare.setBefore(input).catch(() => {}); this.showFile(); }
      const entry = await this.entry();
      // The scale attribute applies below the loaded model's own scale (x4 on an x2 model gives x2).
      let scale = entry.scale;
      const blob = await this.session.run(entry, controller.signal, (up) => {
        const run = progressReporter(onProgress);
        const own = up.info?.scale || entry.scale;
        const asked = effectiveScale(this.scale, own);
        scale = asked ?? own;
        return up.upscale(input as any, {
          output: 'png',
          ...(entry.options ?? {}),
          ...(asked ? { scale: asked } : {}),
          ...(entry.architecture === 'pisa-sr' || this.lambdaPix !== null || this.lambdaSem !== null
            ? { lambdaPix: this.lambdaPix ?? 1, lambdaSem: this.lambdaSem ?? 1 } : {}),
          ...(this.colorFix ? { colorFix: this.colorFix as 'adain' | 'wavelet' | 'none' } : {}),
          onProgress: run,
          signal: controller.signal,
        } as any) as Promise<Blob>;
      }, { onProgress });
      const file = new File([blob], outputName(name, { scale }), { type: 'image/png' });
      this.result = file;
      this.internals?.setFormValue(file);
      await this.compare.setAfter(blob);
      const a = this.q<HTMLAnchorElement>('.dl');
      if (this.downloadUrl) URL.revokeObjectURL(this.downloadUrl);
      this.downloadUrl = URL.createObjectURL(file);
      a.href = this.downloadUrl;
      a.download = file.name;
      a.hidden = false;
      bar.value = 1;
      this.say(`Done in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${file.name}`);
      this.emit('upscale-complete', blob);
      return blob;
    } catch (e) {
      bar.hidden = true;
      if (isCancel(e) || controller.signal.aborted) {
        this.say('Cancelled.');
        this.emit('upscale-cancel', { name });
        throw cancelled();
      }
      const message = e instanceof Error ? e.message : String(e);
      this.say(message, true);
      this.emit('upscale-error', { message, error: e });
      throw e instanceof Error ? e : new Error(message);
    } finally {
      outer?.removeEventListener('abort', onOuter);
      this.controller = null;
      this.sync();
    }
  }

  /** Stops the running upscale (its Promise rejects with "cancelled", and upscale-cancel fires). */
  cancel() {
    this.controller?.abort();
  }

  private onPaste = (e: ClipboardEvent) => {
    if (this.disabled) return;
    const f = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
    if (f) this.pick(f);
  };

  private async pick(f: File) {
    const name = f.name || 'pasted.png';
    try {
      await inspectImage(f);
    } catch (e) {
      this.say(`${name}: ${(e as Error).message}`, true);
      return;
    }
    this.picked = f;
    this.pickedName = name;
    this.showFile();
    this.compare.setAfter(null);
    this.compare.setBefore(f).catch(() => this.say(`${this.pickedName} could not be read as an image; PNG, JPEG and WebP work.`, true));
    this.q<HTMLElement>('.dl').hidden = true;
    this.say('Press Upscale to start.');
    this.sync();
  }

  private showFile() {
    this.q('.file').textContent = this.picked ? this.pickedName : '';
  }

  private catalogEntries(): Promise<CatalogEntry[]> {
    const url = this.catalog || defaultCatalogUrl();
    this.catalogPromise ??= loadCatalog(url).catch(() => fallbackCatalog(url));
    return this.catalogPromise;
  }

  private async entry(): Promise<CatalogEntry> {
    const cat = await this.catalogEntries();
    return this.model ? resolveModel(this.model, cat, this.catalog || defaultCatalogUrl()) : defaultEntry(cat);
  }

  private async showModel() {
    if (!this.isConnected) return;
    try {
      const e = await this.entry();
      this.q('.model').textContent = `${e.name}${e.description ? ` · ${e.description}` : ''}`;
    } catch { /* shown when it runs */ }
  }

  private sync() {
    const running = this.controller !== null;
    this.q<HTMLButtonElement>('.go').disabled = this.disabled || running || !this.picked;
    this.q<HTMLButtonElement>('.cancel').hidden = !running;
    this.q<HTMLInputElement>('input[type=file]').disabled = this.disabled || running;
    this.internals?.setValidity?.({});
  }

  private say(text: string, error = false) {
    const m = this.q<HTMLElement>('.msg');
    m.textContent = text;
    m.classList.toggle('error', error);
  }

  private emit(type: string, detail: unknown) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }
}

function num(v: string | null): number | null {
  if (v === null || v.trim() === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

function setNum(el: HTMLElement, attr: string, v: number | null) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) el.removeAttribute(attr);
  else el.setAttribute(attr, String(v));
}

if (!customElements.get('onestep-upscaler')) customElements.define('onestep-upscaler', OnestepUpscaler);

declare global {
  interface HTMLElementTagNameMap { 'onestep-upscaler': OnestepUpscaler }
}
