// <onestep-upscaler model="…/manifest.json">: drop, paste or pick an image; it upscales in
// a worker with progress and a Stop button, shows before / after, and offers a download.
// PiSA-SR models get fidelity sliders that re-render without re-running the network.
import { Upscaler } from './client';

const STYLE = `
:host { display: block; font: 14px/1.4 system-ui, sans-serif; }
.drop { border: 2px dashed #888; border-radius: 8px; padding: 1.5em; text-align: center; cursor: pointer; }
.drop.over { background: #eef; }
.row { display: flex; gap: .5em; align-items: center; margin: .5em 0; flex-wrap: wrap; }
progress { flex: 1; min-width: 10em; }
canvas { max-width: 100%; image-rendering: auto; border: 1px solid #ccc; }
.error { color: #b00; white-space: pre-wrap; }
.sliders[hidden], [hidden] { display: none; }
`;

export class OnestepUpscaler extends HTMLElement {
  static observedAttributes = ['model'];
  private root: ShadowRoot;
  private up: Promise<Upscaler> | null = null;
  private abort: AbortController | null = null;
  private $ = (sel: string) => this.root.querySelector(sel) as HTMLElement;

  constructor() {
    super();
    this.root = this.attachShadow({ mode: 'open' });
    this.root.innerHTML = `<style>${STYLE}</style>
      <div class="drop" part="drop">Drop an image here, paste one, or <u>choose a file</u>
        <input type="file" accept="image/png,image/jpeg,image/webp" hidden></div>
      <div class="row"><span class="status" role="status">Ready</span><progress hidden></progress>
        <button class="stop" hidden>Stop</button></div>
      <div class="sliders row" hidden>
        <label>pixel fidelity <input class="lp" type="range" min="0" max="2" step="0.1" value="1"></label>
        <label>semantic detail <input class="ls" type="range" min="0" max="2" step="0.1" value="1"></label></div>
      <div class="error"></div>
      <div class="row"><a class="download" hidden download="upscaled.png">Download PNG</a></div>
      <canvas part="result" hidden></canvas>`;
    const input = this.$('input') as HTMLInputElement;
    const drop = this.$('.drop');
    drop.onclick = () => input.click();
    input.onchange = () => input.files?.[0] && this.upscaleFile(input.files[0]);
    drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
    drop.ondragleave = () => drop.classList.remove('over');
    drop.ondrop = (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      const f = e.dataTransfer?.files?.[0];
      if (f) this.upscaleFile(f);
    };
    this.$('.stop').onclick = () => this.abort?.abort();
    const adjust = () => this.adjust();
    this.$('.lp').onchange = adjust;
    this.$('.ls').onchange = adjust;
  }

  connectedCallback() {
    document.addEventListener('paste', this.onPaste);
  }

  disconnectedCallback() {
    document.removeEventListener('paste', this.onPaste);
  }

  attributeChangedCallback() {
    this.up = null;
  }

  private onPaste = (e: ClipboardEvent) => {
    const f = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
    if (f) this.upscaleFile(f);
  };

  private status(text: string, done?: number, total?: number) {
    this.$('.status').textContent = text;
    const bar = this.$('progress') as HTMLProgressElement;
    bar.hidden = total === undefined;
    if (total !== undefined) { bar.max = total; bar.value = done ?? 0; }
  }

  private model(): Promise<Upscaler> {
    const url = this.getAttribute('model');
    if (!url) return Promise.reject(new Error('set the model attribute to a manifest URL'));
    this.up ??= Upscaler.load(url, {
      signal: this.abort?.signal,
      onProgress: (p) => this.status(`${p.stage === 'cache' ? 'Reading' : 'Downloading'} weights: shard ${p.shard} of ${p.shards}`, p.bytesDone, p.bytesTotal),
    });
    this.up.catch(() => { this.up = null; });
    return this.up;
  }

  async upscaleFile(file: Blob) {
    this.$('.error').textContent = '';
    this.abort = new AbortController();
    this.$('.stop').hidden = false;
    try {
      const bitmap = await createImageBitmap(file, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
      const up = await this.model();
      const pisa = up.info.architecture === 'pisa-sr';
      const lambdas = pisa ? { lambdaPix: Number((this.$('.lp') as HTMLInputElement).value), lambdaSem: Number((this.$('.ls') as HTMLInputElement).value) } : {};
      const t0 = performance.now();
      const out = await up.upscale(bitmap, {
        ...lambdas,
        signal: this.abort.signal,
        onProgress: (p) => this.status(`${p.stage}: ${p.done} of ${p.total}`, p.done, p.total),
      });
      this.show(out);
      this.$('.sliders').hidden = !pisa;
      this.status(`Done in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${out.width}x${out.height}`);
      this.dispatchEvent(new CustomEvent('result', { detail: out }));
    } catch (e) {
      this.fail(e);
    } finally {
      this.$('.stop').hidden = true;
    }
  }

  private async adjust() {
    try {
      const up = await this.model();
      this.status('Re-rendering…');
      const out = await up.adjust(Number((this.$('.lp') as HTMLInputElement).value), Number((this.$('.ls') as HTMLInputElement).value));
      this.show(out);
      this.status('Adjusted');
    } catch (e) {
      this.fail(e);
    }
  }

  private fail(e: unknown) {
    const msg = e instanceof Error ? e.message : String(e);
    this.status(msg === 'cancelled' ? 'Stopped' : 'Failed');
    if (msg !== 'cancelled') this.$('.error').textContent = msg;
    this.dispatchEvent(new CustomEvent('error', { detail: msg }));
  }

  private show(img: ImageData) {
    const canvas = this.$('canvas') as HTMLCanvasElement;
    canvas.width = img.width;
    canvas.height = img.height;
    canvas.getContext('2d')!.putImageData(img, 0, 0);
    canvas.hidden = false;
    canvas.toBlob((b) => {
      const a = this.$('.download') as HTMLAnchorElement;
      if (a.href) URL.revokeObjectURL(a.href);
      a.href = URL.createObjectURL(b!);
      a.hidden = false;
    }, 'image/png');
  }
}

if (!customElements.get('onestep-upscaler')) customElements.define('onestep-upscaler', OnestepUpscaler);
