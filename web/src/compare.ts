// The compare view: the result with the input over it, split by a before/after slider; one
// zoom and pan for both (wheel, pinch, buttons, 1:1, keyboard), the input drawn with
// nearest-neighbour scaling so that its real pixels show. A preview of a region (PiSA-SR's
// live sliders) is drawn over the result and marked as such until the exact image replaces it.

export const COMPARE_CSS = `
.cmp { display: flex; flex-direction: column; gap: .4em; min-width: 0; }
.cmp-view { position: relative; overflow: hidden; height: var(--onestep-view-height, min(65vh, 560px));
  background: var(--onestep-view-bg, repeating-conic-gradient(#d9d9d9 0 25%, #f2f2f2 0 50%) 0 0 / 16px 16px);
  border: 1px solid var(--onestep-border, #9aa3ad); border-radius: 6px; touch-action: none; cursor: grab;
  user-select: none; -webkit-user-select: none; outline: none; }
.cmp-view:focus-visible { box-shadow: 0 0 0 3px var(--onestep-focus, #1a73e8); }
.cmp-view.panning { cursor: grabbing; }
.cmp-layer { position: absolute; inset: 0; }
/* The input's side has the view's own backdrop, opaque: a transparent input shows the
   backdrop through it, as the result's side does, never the result. */
.cmp-before { background: var(--onestep-view-bg, repeating-conic-gradient(#d9d9d9 0 25%, #f2f2f2 0 50%) 0 0 / 16px 16px); }
.cmp-stage { position: absolute; left: 0; top: 0; transform-origin: 0 0; }
.cmp-stage > * { position: absolute; left: 0; top: 0; width: 100%; height: 100%; display: block; }
.cmp-before canvas { image-rendering: pixelated; }
.cmp-view.px .cmp-after img { image-rendering: pixelated; }
.cmp-stage canvas.cmp-preview { image-rendering: auto; outline: 2px dashed var(--onestep-accent, #1a73e8); outline-offset: -1px; }
.cmp-divider { position: absolute; top: 0; bottom: 0; width: 0; border-left: 2px solid #fff; box-shadow: 0 0 0 1px rgba(0,0,0,.45); }
.cmp-handle { position: absolute; top: 50%; width: 44px; height: 44px; margin-top: -22px; border-radius: 50%;
  background: var(--onestep-accent, #1a73e8); color: #fff; display: grid; place-items: center; cursor: ew-resize;
  font: 700 16px/1 system-ui, sans-serif; box-shadow: 0 1px 4px rgba(0,0,0,.5); touch-action: none; }
.cmp-handle:focus-visible { outline: 3px solid var(--onestep-focus, #ffbf47); outline-offset: 2px; }
.cmp-tag { position: absolute; top: .5em; padding: .15em .5em; border-radius: 4px; background: rgba(0,0,0,.65); color: #fff;
  font: 12px/1.4 system-ui, sans-serif; pointer-events: none; }
.cmp-tag.b { left: .5em; } .cmp-tag.a { right: .5em; }
.cmp-tag.p { left: 50%; transform: translateX(-50%); top: auto; bottom: .5em; background: var(--onestep-accent, #1a73e8); }
.cmp-empty { position: absolute; inset: 0; display: grid; place-items: center; color: var(--onestep-muted, #5f6b76); padding: 1em; text-align: center; }
.cmp-bar { display: flex; flex-wrap: wrap; gap: .3em; align-items: center; }
.cmp-bar button { min-width: 2.75em; min-height: 2.2em; }
.cmp-bar output { min-width: 4.5em; font-variant-numeric: tabular-nums; }
[hidden] { display: none !important; }
`;

type Source = Blob | ImageBitmap | ImageData | HTMLCanvasElement;

const ZOOM_MIN = 0.02;
const ZOOM_MAX = 64;

export class CompareView {
  readonly el: HTMLElement;
  private view: HTMLElement;
  private afterLayer: HTMLElement;
  private beforeLayer: HTMLElement;
  private afterStage: HTMLElement;
  private beforeStage: HTMLElement;
  private afterImg: HTMLImageElement;
  private beforeCanvas: HTMLCanvasElement;
  private previewCanvas: HTMLCanvasElement;
  private divider: HTMLElement;
  private handle: HTMLElement;
  private tags: { b: HTMLElement; a: HTMLElement; p: HTMLElement };
  private empty: HTMLElement;
  private zoomOut: HTMLOutputElement;
  /** Size of the image shown (the result's, or the input's before any result). */
  private w = 0;
  private h = 0;
  private z = 1;
  private tx = 0;
  private ty = 0;
  private split = 0.5;
  private fitted = true;
  private hasBefore = false;
  private hasAfter = false;
  private afterUrl = '';
  private pointers = new Map<number, { x: number; y: number }>();
  private pinch: { d: number; z: number } | null = null;

  constructor(doc: Document, opts: { emptyText?: string; part?: string } = {}) {
    const el = doc.createElement('div');
    el.className = 'cmp';
    if (opts.part) el.setAttribute('part', opts.part);
    el.innerHTML = `
      <div class="cmp-view" tabindex="0" role="group" aria-roledescription="image compare"
        aria-label="Before and after: drag or use the arrow keys to pan, + and - to zoom, 0 to fit, 1 for 1:1">
        <div class="cmp-layer cmp-after"><div class="cmp-stage"><img alt="Upscaled result" hidden><canvas class="cmp-preview" hidden></canvas></div></div>
        <div class="cmp-layer cmp-before"><div class="cmp-stage"><canvas></canvas></div></div>
        <div class="cmp-divider" hidden></div>
        <div class="cmp-handle" role="slider" tabindex="0" aria-label="Before and after" hidden
          aria-valuemin="0" aria-valuemax="100" aria-valuenow="50" aria-valuetext="50% before">&#x2194;</div>
        <span class="cmp-tag b" hidden>Before</span><span class="cmp-tag a" hidden>After</span>
        <span class="cmp-tag p" hidden>Preview of this region, rendering the whole image…</span>
        <div class="cmp-empty">${opts.emptyText ?? 'Your image appears here.'}</div>
      </div>
      <div class="cmp-bar" role="toolbar" aria-label="Zoom">
        <button type="button" data-z="out" aria-label="Zoom out">−</button>
        <button type="button" data-z="in" aria-label="Zoom in">+</button>
        <button type="button" data-z="fit">Fit</button>
        <button type="button" data-z="1">1:1</button>
        <output aria-label="Zoom level">100%</output>
      </div>`;
    this.el = el;
    const q = <T extends Element>(s: string) => el.querySelector(s) as T;
    this.view = q('.cmp-view');
    this.afterLayer = q('.cmp-after');
    this.beforeLayer = q('.cmp-before');
    this.afterStage = q('.cmp-after .cmp-stage');
    this.beforeStage = q('.cmp-before .cmp-stage');
    this.afterImg = q('.cmp-after img');
    this.previewCanvas = q('canvas.cmp-preview');
    this.beforeCanvas = q('.cmp-before canvas');
    this.divider = q('.cmp-divider');
    this.handle = q('.cmp-handle');
    this.tags = { b: q('.cmp-tag.b'), a: q('.cmp-tag.a'), p: q('.cmp-tag.p') };
    this.empty = q('.cmp-empty');
    this.zoomOut = q('output');
    this.wire();
    this.layout(true);
    new ResizeObserver(() => { if (this.fitted) this.fit(); else this.apply(); }).observe(this.view);
  }

  /** The input (drawn nearest-neighbour) and, optionally, the result. */
  async setBefore(src: Source | null) {
    this.hasBefore = false;
    if (src) {
      const bm = await toDrawable(src);
      this.beforeCanvas.width = bm.width;
      this.beforeCanvas.height = bm.height;
      const ctx = this.beforeCanvas.getContext('2d')!;
      ctx.clearRect(0, 0, bm.width, bm.height);
      if (bm instanceof ImageData) ctx.putImageData(bm, 0, 0);
      else ctx.drawImage(bm, 0, 0);
      this.hasBefore = true;
      if (!this.hasAfter) { this.w = bm.width; this.h = bm.height; }
    }
    this.layout(true);
  }

  /** The result (a PNG Blob); null clears it. Replaces any preview. */
  async setAfter(png: Blob | null, keepView = false) {
    this.clearPreview();
    if (this.afterUrl) URL.revokeObjectURL(this.afterUrl);
    this.afterUrl = '';
    this.hasAfter = false;
    this.afterImg.hidden = true;
    if (png) {
      this.afterUrl = URL.createObjectURL(png);
      this.afterImg.src = this.afterUrl;
      await this.afterImg.decode();
      this.afterImg.hidden = false;
      this.hasAfter = true;
      const sameSize = this.w === this.afterImg.naturalWidth && this.h === this.afterImg.naturalHeight;
      this.w = this.afterImg.naturalWidth;
      this.h = this.afterImg.naturalHeight;
      this.layout(!(keepView && sameSize));
      return;
    }
    if (this.hasBefore) { this.w = this.beforeCanvas.width; this.h = this.beforeCanvas.height; }
    this.layout(true);
  }

  clear() {
    this.hasBefore = false;
    this.setAfter(null);
  }

  /** Size of the result as shown (display pixels of the image, before zoom). */
  get imageSize() { return { width: this.w, height: this.h }; }

  /** The part of the image in view, in image pixels (clamped to the image). */
  visibleRect() {
    const vw = this.view.clientWidth, vh = this.view.clientHeight;
    const x0 = Math.max(0, Math.floor(-this.tx / this.z));
    const y0 = Math.max(0, Math.floor(-this.ty / this.z));
    const x1 = Math.min(this.w, Math.ceil((vw - this.tx) / this.z));
    const y1 = Math.min(this.h, Math.ceil((vh - this.ty) / this.z));
    return { x: x0, y: y0, width: Math.max(0, x1 - x0), height: Math.max(0, y1 - y0) };
  }

  /** Draws a preview of one region (in image pixels of the shown result) and marks it. */
  showPreview(img: ImageData, rect: { x: number; y: number; width: number; height: number }) {
    const c = this.previewCanvas;
    c.width = img.width;
    c.height = img.height;
    c.getContext('2d')!.putImageData(img, 0, 0);
    Object.assign(c.style, {
      left: `${(rect.x / this.w) * 100}%`, top: `${(rect.y / this.h) * 100}%`,
      width: `${(rect.width / this.w) * 100}%`, height: `${(rect.height / this.h) * 100}%`,
    });
    c.hidden = false;
    this.tags.p.hidden = false;
    this.el.dataset.preview = 'true';
  }

  clearPreview() {
    this.previewCanvas.hidden = true;
    this.tags.p.hidden = true;
    delete this.el.dataset.preview;
  }

  get hasPreview() { return !this.previewCanvas.hidden; }

  fit() {
    const vw = this.view.clientWidth, vh = this.view.clientHeight;
    if (!this.w || !vw || !vh) return;
    this.z = clamp(Math.min(vw / this.w, vh / this.h), ZOOM_MIN, ZOOM_MAX);
    this.tx = (vw - this.w * this.z) / 2;
    this.ty = (vh - this.h * this.z) / 2;
    this.fitted = true;
    this.apply();
  }

  /** Zoom by `f` about a point of the view (its centre by default). */
  zoomBy(f: number, cx = this.view.clientWidth / 2, cy = this.view.clientHeight / 2) {
    this.zoomTo(this.z * f, cx, cy);
  }

  zoomTo(z: number, cx = this.view.clientWidth / 2, cy = this.view.clientHeight / 2) {
    const nz = clamp(z, ZOOM_MIN, ZOOM_MAX);
    this.tx = cx - ((cx - this.tx) * nz) / this.z;
    this.ty = cy - ((cy - this.ty) * nz) / this.z;
    this.z = nz;
    this.fitted = false;
    this.apply();
  }

  /** One image pixel per CSS pixel (device pixels on a high-density screen count as one). */
  oneToOne() { this.zoomTo(1); }

  setSplit(f: number) {
    this.split = clamp(f, 0, 1);
    this.apply();
  }

  private layout(refit: boolean) {
    const any = this.hasBefore || this.hasAfter;
    this.empty.hidden = any;
    for (const b of this.el.querySelectorAll<HTMLButtonElement>('.cmp-bar button')) b.disabled = !any;
    this.beforeLayer.hidden = !this.hasBefore;
    const both = this.hasBefore && this.hasAfter;
    this.divider.hidden = !both;
    this.handle.hidden = !both;
    this.tags.b.hidden = !both;
    this.tags.a.hidden = !both;
    if (refit || this.fitted) this.fit(); else this.apply();
  }

  private apply() {
    const t = `translate(${this.tx}px, ${this.ty}px) scale(${this.z})`;
    for (const s of [this.afterStage, this.beforeStage]) {
      s.style.width = `${this.w}px`;
      s.style.height = `${this.h}px`;
      s.style.transform = t;
    }
    const both = this.hasBefore && this.hasAfter;
    // The input covers the left part of the view, up to the divider (in % of the view, so
    // that a resize keeps it in place).
    const at = +(this.split * 100).toFixed(3);
    this.beforeLayer.style.clipPath = both ? `inset(0 ${+(100 - at).toFixed(3)}% 0 0)` : 'none';
    this.divider.style.left = `${at}%`;
    // The handle follows the divider but stays inside the view.
    this.handle.style.left = `clamp(0px, calc(${at}% - 22px), calc(100% - 44px))`;
    const pct = Math.round(this.split * 100);
    this.handle.setAttribute('aria-valuenow', String(pct));
    this.handle.setAttribute('aria-valuetext', `${pct}% before`);
    this.view.classList.toggle('px', this.z >= 2);
    this.zoomOut.value = `${+(this.z * 100).toFixed(this.z < 0.1 ? 1 : 0)}%`;
    this.el.dataset.zoom = String(this.z);
  }

  private wire() {
    const view = this.view;
    this.el.querySelector('.cmp-bar')!.addEventListener('click', (e) => {
      const b = (e.target as HTMLElement).closest('button');
      if (!b) return;
      const k = b.dataset.z;
      if (k === 'in') this.zoomBy(1.5);
      else if (k === 'out') this.zoomBy(1 / 1.5);
      else if (k === 'fit') this.fit();
      else if (k === '1') this.oneToOne();
    });
    view.addEventListener('wheel', (e) => {
      if (!this.w) return;
      e.preventDefault();
      const r = view.getBoundingClientRect();
      const f = Math.exp(-clamp(e.deltaY * (e.deltaMode === 1 ? 16 : 1), -300, 300) / 300);
      this.zoomBy(f, e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });

    // Pan with one pointer, pinch with two; the handle moves the split.
    let dragSplit = false;
    this.handle.addEventListener('pointerdown', (e) => {
      e.stopPropagation();
      dragSplit = true;
      this.handle.setPointerCapture(e.pointerId);
    });
    this.handle.addEventListener('pointermove', (e) => {
      if (!dragSplit) return;
      const r = view.getBoundingClientRect();
      this.setSplit((e.clientX - r.left) / r.width);
    });
    const endSplit = () => { dragSplit = false; };
    this.handle.addEventListener('pointerup', endSplit);
    this.handle.addEventListener('pointercancel', endSplit);

    view.addEventListener('pointerdown', (e) => {
      if (!this.w) return;
      view.setPointerCapture(e.pointerId);
      this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (this.pointers.size === 2) {
        const [a, b] = [...this.pointers.values()];
        this.pinch = { d: Math.hypot(a.x - b.x, a.y - b.y) || 1, z: this.z };
      }
      view.classList.add('panning');
    });
    view.addEventListener('pointermove', (e) => {
      const p = this.pointers.get(e.pointerId);
      if (!p) return;
      const r = view.getBoundingClientRect();
      if (this.pointers.size >= 2 && this.pinch) {
        this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
        const [a, b] = [...this.pointers.values()];
        const d = Math.hypot(a.x - b.x, a.y - b.y) || 1;
        this.zoomTo(this.pinch.z * (d / this.pinch.d), (a.x + b.x) / 2 - r.left, (a.y + b.y) / 2 - r.top);
        return;
      }
      this.tx += e.clientX - p.x;
      this.ty += e.clientY - p.y;
      this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      this.fitted = false;
      this.apply();
    });
    const up = (e: PointerEvent) => {
      if (!this.pointers.delete(e.pointerId)) return;
      if (this.pointers.size < 2) this.pinch = null;
      if (!this.pointers.size) {
        view.classList.remove('panning');
        this.el.dispatchEvent(new CustomEvent('viewchange', { bubbles: false }));
      }
    };
    view.addEventListener('pointerup', up);
    view.addEventListener('pointercancel', up);

    this.handle.addEventListener('keydown', (e) => {
      const step = { ArrowLeft: -0.02, ArrowDown: -0.02, ArrowRight: 0.02, ArrowUp: 0.02, PageDown: -0.1, PageUp: 0.1 }[e.key];
      if (step !== undefined) this.setSplit(this.split + step);
      else if (e.key === 'Home') this.setSplit(0);
      else if (e.key === 'End') this.setSplit(1);
      else return;
      e.preventDefault();
      e.stopPropagation();
    });
    view.addEventListener('keydown', (e) => {
      if (e.target !== view) return;
      const pan = 40;
      const keys: Record<string, () => void> = {
        '+': () => this.zoomBy(1.5), '=': () => this.zoomBy(1.5), '-': () => this.zoomBy(1 / 1.5),
        '0': () => this.fit(), '1': () => this.oneToOne(),
        ArrowLeft: () => this.panBy(pan, 0), ArrowRight: () => this.panBy(-pan, 0),
        ArrowUp: () => this.panBy(0, pan), ArrowDown: () => this.panBy(0, -pan),
      };
      const f = keys[e.key];
      if (!f) return;
      e.preventDefault();
      f();
    });
  }

  private panBy(dx: number, dy: number) {
    this.tx += dx;
    this.ty += dy;
    this.fitted = false;
    this.apply();
  }
}

function clamp(v: number, lo: number, hi: number) { return Math.min(hi, Math.max(lo, v)); }

async function toDrawable(src: Source): Promise<ImageBitmap | ImageData | HTMLCanvasElement> {
  if (src instanceof Blob) return createImageBitmap(src, { premultiplyAlpha: 'none', colorSpaceConversion: 'none', imageOrientation: 'from-image' });
  return src;
}
