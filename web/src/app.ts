// The upload page: a queue of images (choose, drop, paste, or shared into the installed app),
// a model picker from the catalog (size and cached state shown before anything is fetched),
// output scale or width, PiSA-SR's sliders with live previews, progress with Cancel, the
// compare view, Download / Download all (ZIP), the model manager, and the offline PWA.
import { zipSync } from 'fflate';
import { Upscaler, capabilities, inspectImage } from './client';
import { type CachedModel, type CatalogEntry, cacheState, defaultEntry, effectiveScale, fallbackCatalog, formatBytes, groupedCatalog, loadCatalog, outputName } from './catalog';
import { COMPARE_CSS, CompareView } from './compare';
import { Session, isCancel, progressReporter, type Progress } from './session';

type State = 'waiting' | 'running' | 'done' | 'failed' | 'cancelled';
interface Item {
  id: number;
  file: File;
  state: State;
  note: string;
  result: Blob | null;
  outName: string;
  /** Input size when the browser could decode it (for the preview's region mapping). */
  size: { width: number; height: number } | null;
  /** The model output's size before any scale / width, and the size shown. */
  modelScale: number;
  url: string;
}

const PRESETS: Record<string, [number, number]> = { faithful: [1.0, 0.5], balanced: [1.0, 1.0], creative: [0.8, 1.6] };
const SCALES = [4, 3, 2, 1.5, 1];

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

const session = new Session();
let catalog: CatalogEntry[] = [];
let cached: CachedModel[] = [];
let items: Item[] = [];
let selected: Item | null = null;
let nextId = 1;
let controller: AbortController | null = null;
let compare: CompareView;
/** PiSA-SR's kept predictions live in the worker for the last adjustable run only. */
let adjustable: { item: Item; entry: CatalogEntry } | null = null;
let noticeShown = '';

function catalogUrl() {
  return new URLSearchParams(location.search).get('catalog') ?? 'models.json';
}

function entry(): CatalogEntry {
  const id = $<HTMLSelectElement>('model').value;
  return catalog.find((m) => m.id === id) ?? defaultEntry(catalog);
}

function lambdas(): [number, number] {
  return [Number($<HTMLInputElement>('lambda-pix').value), Number($<HTMLInputElement>('lambda-sem').value)];
}

/** The output size options: { scale } (≤ the model's) or { width }. */
function sizeOptions(): { scale?: number; width?: number } {
  const w = Number($<HTMLInputElement>('width').value);
  if (Number.isInteger(w) && w > 0) return { width: w };
  const s = Number($<HTMLSelectElement>('scale').value);
  const e = effectiveScale(s, entry().scale);
  return e ? { scale: e } : {};
}

function status(text: string, fraction?: number) {
  $('status').textContent = text;
  const bar = $<HTMLProgressElement>('bar');
  bar.hidden = fraction === undefined;
  if (fraction !== undefined) bar.value = fraction;
}

/** A message as a sentence: capitalised, with a full stop. */
function sentence(text: string) {
  const t = text.trim();
  if (!t) return '';
  return `${t[0].toUpperCase()}${t.slice(1)}${/[.!?…)]$/.test(t) ? '' : '.'}`;
}

function message(text: string, error = false) {
  const m = $('message');
  m.textContent = sentence(text);
  m.classList.toggle('error', error);
}

function setRenderState(state: '' | 'preview' | 'exact', text = '') {
  const r = $('render-state');
  r.dataset.state = state;
  r.textContent = text;
  r.hidden = !state;
}

// ---- Catalog, model picker, model manager --------------------------------------------------

async function readCatalog() {
  try {
    catalog = await loadCatalog(catalogUrl());
  } catch (e) {
    catalog = fallbackCatalog(location.href);
    message(`${(e as Error).message}; offering the default model only.`, true);
  }
  const sel = $<HTMLSelectElement>('model');
  const want = new URLSearchParams(location.search).get('model') ?? localStorage.getItem('onestep-model');
  // Grouped (photos, anime and drawings, diffusion) when the catalog has more than one kind.
  const groups = groupedCatalog(catalog);
  sel.replaceChildren(...(groups.length > 1
    ? groups.map(({ group, models }) => {
      const g = document.createElement('optgroup');
      g.label = group;
      g.append(...models.map((m) => new Option(m.name, m.id)));
      return g;
    })
    : catalog.map((m) => new Option(m.name, m.id))));
  sel.value = catalog.some((m) => m.id === want) ? want! : defaultEntry(catalog).id;
  modelChanged();
}

function renderModelInfo() {
  const sel = $<HTMLSelectElement>('model');
  for (const o of sel.options) {
    const m = catalog.find((c) => c.id === o.value);
    if (m) o.textContent = `${m.name} — ${m.description ? `${m.description}, ` : ''}${cacheState(m, cached).state === 'cached' ? 'on this device' : formatBytes(m.bytes)}`;
  }
  const m = entry();
  if (!m) return;
  const c = cacheState(m, cached);
  $('model-info').textContent = `${m.description ? `${m.description}. ` : ''}${c.text[0].toUpperCase()}${c.text.slice(1)}.${m.licence ? ` Licence: ${m.licence}.` : ''}`;
  $('model-info').dataset.cache = c.state;
}

function modelChanged() {
  const m = entry();
  localStorage.setItem('onestep-model', m.id);
  // Output scales: the model's own (the default) and the smaller ones; never above it (the
  // engine refuses those). A smaller one chosen before stays when the new model allows it.
  const scale = $<HTMLSelectElement>('scale');
  const prev = scale.value;
  scale.replaceChildren(new Option(`x${m.scale} (the model's)`, ''),
    ...SCALES.filter((s) => s < m.scale).map((s) => new Option(`x${s} (downscaled)`, String(s))));
  if ([...scale.options].some((o) => o.value === prev)) scale.value = prev;
  $('pisa').hidden = m.architecture !== 'pisa-sr';
  renderModelInfo();
  syncButtons();
}

async function refreshCache() {
  try {
    cached = await Upscaler.cached();
  } catch {
    cached = [];
  }
  renderModelInfo();
  const list = $('cache');
  list.replaceChildren();
  if (!cached.length) {
    const li = document.createElement('li');
    li.textContent = 'No model downloaded yet: the first upscale downloads the chosen one.';
    list.append(li);
  }
  for (const c of cached) {
    const m = catalog.find((x) => x.manifest === c.url);
    const name = m?.name ?? c.modelId;
    const li = document.createElement('li');
    const text = document.createElement('span');
    text.textContent = `${name}: ${formatBytes(c.bytes)}${c.complete ? '' : ` of ${formatBytes(c.totalBytes)} (partial)`}`;
    const del = document.createElement('button');
    del.type = 'button';
    del.textContent = 'Delete';
    del.setAttribute('aria-label', `Delete ${name}`);
    del.onclick = async () => {
      del.disabled = true;
      try {
        await Upscaler.evict(c.url);
        message(`${name} was deleted from this device.`);
      } catch (e) {
        message(`Could not delete ${name}: ${(e as Error).message}`, true);
      }
      refreshCache();
    };
    li.append(text, del);
    list.append(li);
  }
  showStorage();
}

async function showStorage() {
  if (!navigator.storage?.estimate) return;
  const { usage = 0, quota = 0 } = await navigator.storage.estimate();
  $('storage').textContent = `Storage: this site uses ${formatBytes(usage) === 'size unknown' ? '0 B' : formatBytes(usage)} of the ${formatBytes(quota)} this browser allows it.`;
}

async function setupPersist() {
  const box = $<HTMLInputElement>('persist');
  if (!navigator.storage?.persist) { box.disabled = true; return; }
  box.checked = await navigator.storage.persisted();
  box.onchange = async () => {
    if (!box.checked) {
      message('Models stay until you delete them, but the browser may clear them when space runs low.');
      return;
    }
    const ok = await navigator.storage.persist();
    box.checked = ok;
    message(ok ? 'Models are kept available offline: the browser will not clear them on its own.'
      : 'The browser declined to keep storage (it decides from how the site is used); models may be cleared when space runs low.', !ok);
  };
}

async function showCapabilities() {
  try {
    const c = await capabilities();
    $('caps').textContent = c.webgpu && c.backend !== 'cpu'
      ? `WebGPU: ${c.adapter?.description || c.adapter?.vendor || 'GPU'}${c.shaderF16 ? ', 16-bit shaders' : ''}.`
      : sentence(c.notice || 'No WebGPU here: models run on the CPU, which is slower');
    if (c.notice && !noticeShown) { noticeShown = c.notice; message(c.notice); }
  } catch (e) {
    $('caps').textContent = `Could not start the engine: ${(e as Error).message}`;
  }
}

// ---- The queue ----------------------------------------------------------------------------

// Files being checked and queued: Upscale pressed meanwhile waits for them.
let adding: Promise<void> = Promise.resolve();

function addFiles(files: File[]): Promise<void> {
  const next = adding.then(() => queueFiles(files));
  adding = next.catch(() => {});
  return next;
}

async function queueFiles(files: File[]) {
  const images = files.filter((f) => f.size > 0 || f.type.startsWith('image/'));
  if (!images.length) {
    if (files.length) message(`${files[0].name || 'That file'} is empty or not an image.`, true);
    return;
  }
  const added: Item[] = [];
  const refused: string[] = [];
  for (const file of images) {
    // Its header only: a file the engine would refuse (over the size limit, not an image) is
    // never decoded or queued.
    let size: { width: number; height: number };
    try {
      size = await inspectImage(file);
    } catch (e) {
      refused.push(`Could not add ${file.name || 'that file'}: ${(e as Error).message}`);
      continue;
    }
    const it: Item = {
      id: nextId++, file, state: 'waiting', note: `Waiting · ${size.width}×${size.height}`, result: null, outName: '',
      size: { width: size.width, height: size.height }, modelScale: 4, url: '',
    };
    items.push(it);
    added.push(it);
  }
  message(refused.map(sentence).join(' '), refused.length > 0);
  if (!added.length) return;
  renderQueue();
  await select(added[0]);
  status(items.length > 1 ? `${items.length} images in the queue. Press Upscale to start.` : 'Press Upscale to start.');
  syncButtons();
}

function renderQueue() {
  const q = $('queue');
  q.hidden = items.length === 0;
  q.replaceChildren(...items.map((it) => {
    const li = document.createElement('li');
    li.dataset.state = it.state;
    if (it === selected) li.setAttribute('aria-current', 'true');
    const show = document.createElement('button');
    show.type = 'button';
    show.className = 'show';
    show.title = `Show ${it.file.name}`;
    show.innerHTML = '<span class="name"></span><span class="state"></span>';
    show.querySelector('.name')!.textContent = it.file.name;
    show.querySelector('.state')!.textContent = it.note;
    show.onclick = () => select(it);
    li.append(show);
    if (it.result) {
      const a = document.createElement('a');
      a.className = 'button save';
      a.textContent = 'Save';
      a.href = it.url;
      a.download = it.outName;
      a.setAttribute('aria-label', `Download ${it.outName}`);
      li.append(a);
    } else {
      li.append(document.createElement('span'));
    }
    const rm = document.createElement('button');
    rm.type = 'button';
    rm.className = 'remove';
    rm.textContent = '✕';
    rm.setAttribute('aria-label', `Remove ${it.file.name}`);
    rm.disabled = it.state === 'running';
    rm.onclick = () => remove(it);
    li.append(rm);
    return li;
  }));
  const done = items.filter((i) => i.result);
  const all = $('download-all');
  all.hidden = done.length < 2;
  all.textContent = 'Download all';
  all.title = `${done.length} PNG files in one ZIP`;
}

function remove(it: Item) {
  if (it.url) URL.revokeObjectURL(it.url);
  items = items.filter((x) => x !== it);
  if (adjustable?.item === it) adjustable = null;
  if (selected === it) select(items[0] ?? null);
  renderQueue();
  syncButtons();
}

async function select(it: Item | null) {
  selected = it;
  renderQueue();
  const a = $<HTMLAnchorElement>('download');
  setRenderState('');
  if (!it) {
    compare.clear();
    a.hidden = true;
    $('result-info').textContent = '';
    return;
  }
  try {
    await compare.setBefore(it.file);
  } catch {
    await compare.setBefore(null);
  }
  await compare.setAfter(it.result);
  showResult(it);
}

function showResult(it: Item) {
  const a = $<HTMLAnchorElement>('download');
  a.hidden = !it.result;
  if (it.result) {
    a.href = it.url;
    a.download = it.outName;
    const { width, height } = compare.imageSize;
    $('result-info').textContent = `${it.outName} · ${width}×${height} · ${formatBytes(it.result.size)}`;
  } else {
    $('result-info').textContent = '';
  }
}

function syncButtons() {
  const running = controller !== null;
  const go = $<HTMLButtonElement>('go');
  go.disabled = running || items.length === 0 || catalog.length === 0;
  $('cancel').hidden = !running;
  $<HTMLSelectElement>('model').disabled = running;
}

function setResult(it: Item, blob: Blob) {
  if (it.url) URL.revokeObjectURL(it.url);
  it.result = blob;
  it.url = URL.createObjectURL(blob);
}

async function upscaleAll() {
  if (controller) return;
  await adding;
  if (controller) return;
  const m = entry();
  let todo = items.filter((i) => i.state === 'waiting' || i.state === 'cancelled');
  if (!todo.length && selected) todo = [selected];
  if (!todo.length) return;
  controller = new AbortController();
  const signal = controller.signal;
  // A new run supersedes a pending PiSA-SR re-render.
  liveGen++;
  whole?.abort();
  syncButtons();
  message(noticeShown);
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
      if (selected !== it) await select(it); else renderQueue();
      setRenderState('');
      const t0 = performance.now();
      const show = (p: Progress) => status(`${prefix}${p.text}`, p.fraction);
      status(`${prefix}Starting…`, 0);
      try {
        let modelScale = m.scale;
        let runSize = size;
        const blob = await session.run(m, signal, async (up) => {
          if (up.info?.notices?.length) message(up.info.notices.join(' '));
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
        adjustable = pisa ? { item: it, entry: m } : null;
        if (selected === it) {
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
  } finally {
    controller = null;
    renderQueue();
    syncButtons();
    refreshCache();
  }
}

async function downloadAll() {
  const done = items.filter((i) => i.result);
  if (!done.length) return;
  const files: Record<string, [Uint8Array, { level: 0 }]> = {};
  for (const it of done) {
    let name = it.outName;
    for (let n = 2; files[name]; n++) name = it.outName.replace(/\.png$/, `-${n}.png`);
    // PNGs are compressed already: stored as they are.
    files[name] = [new Uint8Array(await it.result!.arrayBuffer()), { level: 0 }];
  }
  const zip = zipSync(files);
  const url = URL.createObjectURL(new Blob([zip as BlobPart], { type: 'application/zip' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `onestep-sr-${done.length}-images.zip`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// ---- PiSA-SR live sliders ------------------------------------------------------------------
// A move previews the visible region at once (adjustRegion: decoder on that region only,
// approximate), then renders the whole image exactly (adjust) and replaces the preview; a
// further move cancels the pending whole render. Downloads always get the whole render.

let liveGen = 0;
let previewBusy = false;
let previewAgain = false;
let whole: AbortController | null = null;

function showLambdas() {
  const [lp, ls] = lambdas();
  $('lambda-pix-out').textContent = lp.toFixed(2);
  $('lambda-sem-out').textContent = ls.toFixed(2);
  for (const b of document.querySelectorAll<HTMLButtonElement>('[data-preset]')) {
    const [p, s] = PRESETS[b.dataset.preset!];
    b.setAttribute('aria-pressed', String(Math.abs(p - lp) < 1e-6 && Math.abs(s - ls) < 1e-6));
  }
}

function liveTarget() {
  if (!adjustable || controller || adjustable.item !== selected || !adjustable.item.result) return null;
  if (session.loadedUrl !== adjustable.entry.manifest) return null;
  return adjustable;
}

function lambdasChanged() {
  showLambdas();
  const t = liveTarget();
  if (!t) {
    if (adjustable && selected && adjustable.item !== selected) {
      $('pisa-note').textContent = 'The sliders apply to the next upscale; live previews work on the latest PiSA-SR result.';
    }
    return;
  }
  liveGen++;
  whole?.abort();
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

// ---- Input: choose, drop, paste, share ------------------------------------------------------

function wireInput() {
  const input = $<HTMLInputElement>('file');
  input.addEventListener('change', () => {
    addFiles([...(input.files ?? [])]);
    input.value = '';
  });
  const drop = $('drop');
  document.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  document.addEventListener('dragleave', (e) => { if (!e.relatedTarget) drop.classList.remove('over'); });
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    addFiles([...(e.dataTransfer?.files ?? [])]);
  });
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith('image/'));
    if (!files.length) return;
    e.preventDefault();
    addFiles(files.map((f, i) => (f.name && f.name !== 'image.png' ? f : new File([f], `pasted-${Date.now().toString(36)}${i ? `-${i}` : ''}.${(f.type.split('/')[1] || 'png').replace('jpeg', 'jpg')}`, { type: f.type }))));
  });
  $('go').addEventListener('click', upscaleAll);
  $('cancel').addEventListener('click', () => {
    controller?.abort();
    status('Cancelling…');
  });
  $('download-all').addEventListener('click', downloadAll);
  $('model').addEventListener('change', () => { adjustable = null; modelChanged(); });
  $('scale').addEventListener('change', () => { if ($<HTMLSelectElement>('scale').value) $<HTMLInputElement>('width').value = ''; });
  $('width').addEventListener('input', () => { if ($<HTMLInputElement>('width').value) $<HTMLSelectElement>('scale').value = ''; });
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
    if (adjustable) $('pisa-note').textContent = 'The colour fix applies to the next upscale (press Upscale to run again).';
  });
}

/** Files shared into the installed app: the service worker keeps them in a cache for us. */
async function takeShared() {
  const params = new URLSearchParams(location.search);
  if (!params.has('shared') || !('caches' in self)) return;
  history.replaceState(null, '', location.pathname);
  const cache = await caches.open('onestep-share');
  const files: File[] = [];
  for (const req of await cache.keys()) {
    const res = await cache.match(req);
    if (res) {
      const blob = await res.blob();
      files.push(new File([blob], decodeURIComponent(res.headers.get('x-file-name') ?? 'shared.png'), { type: blob.type }));
    }
    await cache.delete(req);
  }
  if (files.length) await addFiles(files);
  else message('Nothing was shared, or the shared file could not be kept.', true);
}

// ---- Offline (service worker) ----------------------------------------------------------------

function serviceWorker() {
  if (!('serviceWorker' in navigator) || location.protocol === 'file:') return;
  const prompt = (w: ServiceWorker) => {
    const b = $<HTMLButtonElement>('update');
    b.hidden = false;
    b.onclick = () => { b.disabled = true; b.textContent = 'Updating…'; w.postMessage('skipWaiting'); };
  };
  // Controlled by this app's own service worker (not one of a wider scope on the same origin).
  const ours = new URL('./sw.js', location.href).href;
  const hadController = navigator.serviceWorker.controller?.scriptURL === ours;
  // A new version installs (it may have started before this page ran) and then waits.
  const watch = (w: ServiceWorker | null) => {
    if (!w) return;
    const check = () => { if (w.state === 'installed' && navigator.serviceWorker.controller?.scriptURL === ours) prompt(w); };
    check();
    w.addEventListener('statechange', check);
  };
  navigator.serviceWorker.register('./sw.js').then((reg) => {
    if (reg.waiting && hadController) prompt(reg.waiting);
    watch(reg.installing);
    reg.addEventListener('updatefound', () => watch(reg.installing));
    // Look for a new version now (a navigation does not always check) and then hourly.
    if (hadController && navigator.onLine) reg.update().catch(() => {});
    setInterval(() => reg.update().catch(() => {}), 60 * 60 * 1000);
  }).catch((e) => console.warn('service worker:', e));
  // The shell and the wasm are cached once a service worker is active.
  navigator.serviceWorker.ready.then(() => { $('offline').hidden = false; });
  let reloaded = false;
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    if (hadController && !reloaded) { reloaded = true; location.reload(); }
  });
}

// ---- Start --------------------------------------------------------------------------------

async function main() {
  const style = document.createElement('style');
  style.textContent = COMPARE_CSS;
  document.head.append(style);
  compare = new CompareView(document, { emptyText: 'Choose, drop or paste an image: it appears here, and the result beside it.' });
  $('compare').append(compare.el);
  wireInput();
  showLambdas();
  serviceWorker();
  await readCatalog();
  await takeShared();
  syncButtons();
  showCapabilities();
  refreshCache();
  setupPersist();
}

if (typeof document !== 'undefined' && document.getElementById('compare')) main();
