// The upload page's image queue: files checked and queued, the list with each image's state,
// Download and Remove, the selected image in the compare view with its result, and Download all
// (the results in one ZIP).
import { zipSync } from 'fflate';
import { inspectImage } from './client';
import { formatBytes } from './catalog';
import { type Item, page } from './state';
import { $, compare, message, sentence, setRenderState, status, syncButtons } from './ui';

let nextId = 1;

// Files being checked and queued: Upscale pressed meanwhile waits for them.
export let adding: Promise<void> = Promise.resolve();

export function addFiles(files: File[]): Promise<void> {
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
  // Listed at once, before the engine has started (its first use starts it); each is then
  // checked from its header only, so a file the engine would refuse (over the size limit,
  // not an image) is never decoded, and leaves the queue with a message.
  const items: Item[] = images.map((file) => ({
    id: nextId++, file, state: 'waiting', note: 'Checking…', result: null, outName: '', size: null, modelScale: 4, url: '',
  }));
  page.items.push(...items);
  renderQueue();
  syncButtons();
  // The first image also waits for the engine to start.
  const before = $('status').textContent ?? '';
  status(items.length > 1 ? 'Checking the images…' : 'Checking the image…');
  const refused: string[] = [];
  let first: Item | null = null;
  for (const it of items) {
    try {
      const size = await inspectImage(it.file);
      it.size = { width: size.width, height: size.height };
      it.note = `Waiting · ${size.width}×${size.height}`;
      if (page.items.includes(it)) first ??= it;
    } catch (e) {
      refused.push(`Could not add ${it.file.name || 'that file'}: ${(e as Error).message}`);
      page.items = page.items.filter((x) => x !== it);
    }
  }
  message(refused.map(sentence).join(' '), refused.length > 0);
  renderQueue();
  syncButtons();
  if (!first) { status(before); return; }
  await select(first);
  status(page.items.length > 1 ? `${page.items.length} images in the queue. Press Upscale to start.` : 'Press Upscale to start.');
}

export function renderQueue() {
  const q = $('queue');
  q.hidden = page.items.length === 0;
  q.replaceChildren(...page.items.map((it) => {
    const li = document.createElement('li');
    li.dataset.state = it.state;
    if (it === page.selected) li.setAttribute('aria-current', 'true');
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
      a.textContent = 'Download';
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
  const done = page.items.filter((i) => i.result);
  const all = $('download-all');
  all.hidden = done.length < 2;
  all.textContent = 'Download all';
  all.title = `${done.length} PNG files in one ZIP`;
}

function remove(it: Item) {
  if (it.url) URL.revokeObjectURL(it.url);
  page.items = page.items.filter((x) => x !== it);
  if (page.adjustable?.item === it) page.adjustable = null;
  if (page.selected === it) select(page.items[0] ?? null);
  renderQueue();
  syncButtons();
}

export async function select(it: Item | null) {
  page.selected = it;
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
    // Not decoded before the engine has checked its header (queueFiles).
    await compare.setBefore(it.size ? it.file : null);
  } catch {
    await compare.setBefore(null);
  }
  await compare.setAfter(it.result);
  showResult(it);
}

export function showResult(it: Item) {
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

export function setResult(it: Item, blob: Blob) {
  if (it.url) URL.revokeObjectURL(it.url);
  it.result = blob;
  it.url = URL.createObjectURL(blob);
}

async function downloadAll() {
  const done = page.items.filter((i) => i.result);
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

export function wireQueue() {
  $('download-all').addEventListener('click', downloadAll);
}
