// "Add a diffusion model" on the page: pick (or drop) the folder with the official files, see
// the conversion's progress with time left, Cancel it; the model then joins the picker as
// "PiSA-SR" / "OSEDiff", on this device. A conversion cut short by a closed tab leaves a note
// for the next visit (nothing of it was registered; its shards go at the next add).
import { type AddProgress, addDiffusionModel, droppedFolder } from './add-model';
import { formatBytes } from './catalog';
import { refreshCache } from './manager';
import { selectModel } from './picker';
import { $, message } from './ui';

const MARK = 'onestep-adding';
let running: AbortController | null = null;

function show(text: string, fraction?: number) {
  $('add-status').textContent = text;
  const bar = $<HTMLProgressElement>('add-bar');
  bar.hidden = fraction === undefined;
  if (fraction !== undefined) bar.value = fraction;
}

/** "312 MB of 2.58 GB converted, about 4 min left" from the bytes read so far. */
function progressText(p: AddProgress, started: number): [string, number | undefined] {
  if (p.stage === 'read' || !p.bytesTotal) return ['Reading the checkpoint and the text encoder…', undefined];
  const f = p.bytesDone / p.bytesTotal;
  const elapsed = (performance.now() - started) / 1000;
  const left = f > 0.02 ? elapsed * (1 - f) / f : NaN;
  const eta = Number.isFinite(left) ? `, about ${left < 90 ? `${Math.ceil(left)} s` : `${Math.round(left / 60)} min`} left` : '';
  return [`${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)} converted${eta}`, f];
}

async function add(files: [string, File][] | FileList) {
  if (running) return;
  const count = files.length;
  if (!count) return;
  running = new AbortController();
  const name = (Array.isArray(files) ? files[0][0] : files[0].webkitRelativePath).split('/')[0] || 'the folder';
  localStorage.setItem(MARK, name);
  $<HTMLButtonElement>('add-model').disabled = true;
  $('add-cancel').hidden = false;
  show(`Reading ${name} (${count} files)…`);
  const started = performance.now();
  try {
    const quantize = $<HTMLSelectElement>('add-quantize').value as 'mixed' | 'f16';
    const added = await addDiffusionModel(files, {
      quantize,
      signal: running.signal,
      onProgress: (p) => show(...progressText(p, started)),
    });
    const label = added.architecture === 'pisa-sr' ? 'PiSA-SR' : 'OSEDiff';
    const took = Math.round((performance.now() - started) / 1000);
    await refreshCache();
    selectModel(added.url);
    show(`${label} was added (${formatBytes(added.bytes)}, in ${took} s).`);
    // For developers and the heavy benchmark (web/test/heavy/add-fullsize.mjs): the peak memory.
    console.info(`onestep: added ${JSON.stringify({ ...added, seconds: (performance.now() - started) / 1000 })}`);
    message(`${label} is ready: it is chosen in the model list, stored on this device.`);
  } catch (e) {
    const why = (e as Error).message;
    show(why === 'cancelled' ? 'Cancelled: nothing was kept.' : `Could not add the model: ${why}`);
    if (why !== 'cancelled') message(`Could not add the model: ${why}`, true);
  } finally {
    localStorage.removeItem(MARK);
    running = null;
    $<HTMLButtonElement>('add-model').disabled = false;
    $('add-cancel').hidden = true;
    $<HTMLInputElement>('add-folder').value = '';
  }
}

export function wireDiffusion() {
  const input = $<HTMLInputElement>('add-folder');
  $('add-model').addEventListener('click', () => input.click());
  input.addEventListener('change', () => { if (input.files?.length) add(input.files); });
  $('add-cancel').addEventListener('click', () => running?.abort());
  // A folder dropped anywhere on the page is a model to add (images go to the queue).
  document.addEventListener('drop', async (ev) => {
    if (!ev.dataTransfer || ![...ev.dataTransfer.items].some((i) => i.webkitGetAsEntry?.()?.isDirectory)) return;
    ev.preventDefault();
    ev.stopImmediatePropagation();
    const files = await droppedFolder(ev.dataTransfer);
    if (files) add(files);
  }, true);
  const cut = localStorage.getItem(MARK);
  if (cut) {
    localStorage.removeItem(MARK);
    show(`Adding ${cut} stopped when the page was closed; nothing of it was kept. Choose the folder again to start over.`);
  }
}
