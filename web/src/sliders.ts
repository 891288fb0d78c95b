// The upload page's PiSA-SR controls: the λpix / λsem sliders with their presets and the colour
// fix; after a PiSA-SR upscale a slider move re-renders that result live.
import { renderQueue, setResult, showResult } from './queue';
import { isCancel, progressReporter } from './session';
import { page, session } from './state';
import { $, compare, message, setRenderState, status } from './ui';

const PRESETS: Record<string, [number, number]> = { faithful: [1.0, 0.5], balanced: [1.0, 1.0], creative: [0.8, 1.6] };

export function lambdas(): [number, number] {
  return [Number($<HTMLInputElement>('lambda-pix').value), Number($<HTMLInputElement>('lambda-sem').value)];
}

// ---- PiSA-SR live sliders ------------------------------------------------------------------
// A move previews the visible region at once (adjustRegion: decoder on that region only,
// approximate), then renders the whole image exactly (adjust) and replaces the preview; a
// further move cancels the pending whole render. Downloads always get the whole render.

let liveGen = 0;
let previewBusy = false;
let previewAgain = false;
let whole: AbortController | null = null;

export function showLambdas() {
  const [lp, ls] = lambdas();
  $('lambda-pix-out').textContent = lp.toFixed(2);
  $('lambda-sem-out').textContent = ls.toFixed(2);
  for (const b of document.querySelectorAll<HTMLButtonElement>('[data-preset]')) {
    const [p, s] = PRESETS[b.dataset.preset!];
    b.setAttribute('aria-pressed', String(Math.abs(p - lp) < 1e-6 && Math.abs(s - ls) < 1e-6));
  }
}

/** A new run (an upscale, or a further slider move) supersedes a pending re-render. */
export function supersede() {
  liveGen++;
  whole?.abort();
}

function liveTarget() {
  if (!page.adjustable || page.controller || page.adjustable.item !== page.selected || !page.adjustable.item.result) return null;
  if (session.loadedUrl !== page.adjustable.entry.manifest) return null;
  return page.adjustable;
}

function lambdasChanged() {
  showLambdas();
  const t = liveTarget();
  if (!t) {
    if (page.adjustable && page.selected && page.adjustable.item !== page.selected) {
      $('pisa-note').textContent = 'The sliders apply to the next upscale; live previews work on the latest PiSA-SR result.';
    }
    return;
  }
  supersede();
  whole = null;
  runPreview();
}

async function runPreview() {
  if (previewBusy) { previewAgain = true; return; }
  previewBusy = true;
  try {
    do {
      previewAgain = false;
      const t = liveTarget();
      if (!t) return;
      const gen = liveGen;
      const [lp, ls] = lambdas();
      const up = await session.model(t.entry);
      // The visible part of the shown image, in the model output's pixels (before any
      // scale / width), at most 512 x 512 around the view's centre.
      const v = compare.visibleRect();
      const shown = compare.imageSize;
      const full = t.item.size ? { width: t.item.size.width * t.item.modelScale, height: t.item.size.height * t.item.modelScale } : shown;
      const k = full.width / Math.max(1, shown.width);
      let r = { x: Math.floor(v.x * k), y: Math.floor(v.y * k), width: Math.ceil(v.width * k), height: Math.ceil(v.height * k) };
      const cap = 512;
      if (r.width > cap) { r.x += Math.floor((r.width - cap) / 2); r.width = cap; }
      if (r.height > cap) { r.y += Math.floor((r.height - cap) / 2); r.height = cap; }
      r = { x: r.x, y: r.y, width: Math.min(r.width, full.width - r.x), height: Math.min(r.height, full.height - r.y) };
      if (r.width <= 0 || r.height <= 0) break;
      status(`Preview at λpix ${lp.toFixed(2)}, λsem ${ls.toFixed(2)}…`);
      let img: ImageData;
      try {
        img = await up.adjustRegion(lp, ls, r);
      } catch (e) {
        // No preview: the exact render still follows.
        message(`Preview failed: ${(e as Error).message}`, true);
        break;
      }
      if (gen !== liveGen && previewAgain) continue;
      compare.showPreview(img, { x: r.x / k, y: r.y / k, width: r.width / k, height: r.height / k });
      setRenderState('preview', 'Preview: rendering the whole image…');
    } while (previewAgain);
  } finally {
    previewBusy = false;
  }
  renderWhole();
}

async function renderWhole() {
  const t = liveTarget();
  if (!t) return;
  const gen = liveGen;
  const [lp, ls] = lambdas();
  const ac = new AbortController();
  whole = ac;
  const t0 = performance.now();
  try {
    const up = await session.model(t.entry);
    const blob = await up.adjust(lp, ls, {
      output: 'png',
      signal: ac.signal,
      onProgress: progressReporter((p) => status(`Whole image at λpix ${lp.toFixed(2)}, λsem ${ls.toFixed(2)}: ${p.text}`, p.fraction)),
    } as any) as Blob;
    if (gen !== liveGen || ac.signal.aborted) return;
    setResult(t.item, blob);
    await compare.setAfter(blob, true);
    showResult(t.item);
    renderQueue();
    setRenderState('exact', `Exact at λpix ${lp.toFixed(2)}, λsem ${ls.toFixed(2)}`);
    status(`Rendered the whole image in ${((performance.now() - t0) / 1000).toFixed(1)} s.`, 1);
  } catch (e) {
    if (isCancel(e) || ac.signal.aborted) return;
    message(`Re-rendering failed: ${(e as Error).message}`, true);
  } finally {
    if (whole === ac) whole = null;
  }
}

export function wireSliders() {
  for (const id of ['lambda-pix', 'lambda-sem']) $(id).addEventListener('input', lambdasChanged);
  for (const b of document.querySelectorAll<HTMLButtonElement>('[data-preset]')) {
    b.addEventListener('click', () => {
      const [p, s] = PRESETS[b.dataset.preset!];
      $<HTMLInputElement>('lambda-pix').value = String(p);
      $<HTMLInputElement>('lambda-sem').value = String(s);
      lambdasChanged();
    });
  }
  $('color-fix').addEventListener('change', () => {
    if (page.adjustable) $('pisa-note').textContent = 'The colour fix applies to the next upscale (press Upscale to run again).';
  });
}
