// The upload page's run controls: the output size (scale or width), Upscale over the queue
// with progress per image, and Cancel.
import { effectiveScale, outputName } from './catalog';
import { refreshCache } from './manager';
import { entry } from './picker';
import { adding, renderQueue, select, setResult, showResult } from './queue';
import { type Progress, isCancel, progressReporter } from './session';
import { lambdas, supersede } from './sliders';
import { page, session } from './state';
import { $, compare, message, revealResult, setRenderState, status, syncButtons } from './ui';

/** The output size options: { scale } (≤ the model's) or { width }. */
function sizeOptions(): { scale?: number; width?: number } {
  const w = Number($<HTMLInputElement>('width').value);
  if (Number.isInteger(w) && w > 0) return { width: w };
  const s = Number($<HTMLSelectElement>('scale').value);
  const e = effectiveScale(s, entry().scale);
  return e ? { scale: e } : {};
}

async function upscaleAll() {
  if (page.controller) return;
  await adding;
  if (page.controller) return;
  const m = entry();
  let todo = page.items.filter((i) => i.state === 'waiting' || i.state === 'cancelled');
  if (!todo.length && page.selected) todo = [page.selected];
  if (!todo.length) return;
  page.controller = new AbortController();
  const signal = page.controller.signal;
  // Upscale is disabled while it runs, and the browser may then drop its focus: given back at
  // the end, so a keyboard user is where they were.
  const from = document.activeElement;
  // A new run supersedes a pending PiSA-SR re-render.
  supersede();
  syncButtons();
  message('');
  const size = sizeOptions();
  const [lp, ls] = lambdas();
  const colorFix = $<HTMLSelectElement>('color-fix').value as 'adain' | 'wavelet' | 'none';
  const pisa = m.architecture === 'pisa-sr';
  let failed = 0;
  try {
    for (const [i, it] of todo.entries()) {
      if (signal.aborted) break;
      const prefix = todo.length > 1 ? `Image ${i + 1} of ${todo.length} · ` : '';
      it.state = 'running';
      it.note = 'Running…';
      if (page.selected !== it) await select(it); else renderQueue();
      setRenderState('');
      const t0 = performance.now();
      const show = (p: Progress) => status(`${prefix}${p.text}`, p.fraction);
      status(`${prefix}Starting…`, 0);
      try {
        let modelScale = m.scale;
        let runSize = size;
        const blob = await session.run(m, signal, async (up) => {
          // The CPU fallback's notice comes first; the page says it once, in its own words
          // (manager.ts), so only the others (storage, cache) show here.
          const notices = up.info?.notices ?? [];
          const rest = up.info?.backend === 'cpu' && notices.length ? notices.slice(1) : notices;
          if (rest !== notices) console.info(`onestep-sr: ${notices[0]}`);
          if (rest.length) message(rest.join(' '));
          // The loaded model's own scale rules (a catalog may be wrong about it).
          modelScale = up.info?.scale || m.scale;
          const s = effectiveScale(size.scale, modelScale);
          runSize = size.width ? size : s ? { scale: s } : {};
          return up.upscale(it.file, {
            output: 'png',
            ...(m.options ?? {}),
            ...runSize,
            ...(pisa ? { lambdaPix: lp, lambdaSem: ls, colorFix } : {}),
            onProgress: progressReporter(show),
            signal,
          } as any) as Promise<Blob>;
        }, { onProgress: show, persist: $<HTMLInputElement>('persist').checked });
        it.modelScale = modelScale;
        it.outName = outputName(it.file.name, { scale: runSize.scale ?? modelScale, width: runSize.width });
        setResult(it, blob);
        it.state = 'done';
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        it.note = `Done in ${secs} s`;
        page.adjustable = pisa ? { item: it, entry: m } : null;
        if (page.selected === it) {
          await compare.setAfter(blob);
          showResult(it);
        }
        status(`${prefix}Done in ${secs} s: ${it.outName}.`, 1);
      } catch (e) {
        if (isCancel(e) || signal.aborted) {
          it.state = 'cancelled';
          it.note = 'Cancelled';
          status('Cancelled. Press Upscale to run it again.');
          break;
        }
        failed++;
        it.state = 'failed';
        const msg = (e as Error).message || String(e);
        it.note = 'Failed';
        message(`Could not upscale ${it.file.name}: ${msg}`, true);
        status(`${prefix}Failed.`);
      }
      renderQueue();
    }
    const done = todo.filter((i) => i.state === 'done').length;
    if (!signal.aborted && todo.length > 1) status(`${done} of ${todo.length} images done${failed ? `, ${failed} failed` : ''}.`, 1);
    if (!signal.aborted && page.selected?.result) revealResult();
  } finally {
    page.controller = null;
    renderQueue();
    syncButtons();
    if (from instanceof HTMLElement && from.isConnected && (document.activeElement === document.body || !document.activeElement)) {
      from.focus({ preventScroll: true });
    }
    refreshCache();
  }
}

export function wireControls() {
  $('go').addEventListener('click', upscaleAll);
  $('cancel').addEventListener('click', () => {
    page.controller?.abort();
    status('Cancelling…');
  });
  $('scale').addEventListener('change', () => { if ($<HTMLSelectElement>('scale').value) $<HTMLInputElement>('width').value = ''; });
  $('width').addEventListener('input', () => { if ($<HTMLInputElement>('width').value) $<HTMLSelectElement>('scale').value = ''; });
}
