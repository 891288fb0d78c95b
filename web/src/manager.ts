// The upload page's model manager ("Models on this device"): the stored models with their
// sizes and a Delete for each, the storage used, the "keep available offline" box, and what
// the engine runs on (WebGPU or the CPU).
import { Upscaler, capabilities } from './client';
import { formatBytes } from './catalog';
import { showOffline } from './offline';
import { renderModelInfo, withLocalModels } from './picker';
import { page } from './state';
import { $, message } from './ui';

/** The CPU fallback, said once and for a person; the engine's own reason (in API terms) goes
 *  to the console. */
export const CPU_NOTICE = 'This browser gives the page no graphics card (WebGPU), so images are upscaled on the processor: '
  + 'slower, with the same result. A browser with WebGPU turned on (such as a recent Chrome or Edge) is faster.';

export async function refreshCache() {
  try {
    page.cached = await Upscaler.cached();
  } catch {
    page.cached = [];
  }
  withLocalModels();
  showOffline({ known: true });
  renderModelInfo();
  const list = $('cache');
  list.replaceChildren();
  if (!page.cached.length) {
    const li = document.createElement('li');
    li.textContent = 'No model downloaded yet: the first upscale downloads the chosen one.';
    list.append(li);
  }
  for (const c of page.cached) {
    const m = page.catalog.find((x) => x.manifest === c.url);
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

export async function setupPersist() {
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

export async function showCapabilities() {
  try {
    const c = await capabilities();
    const gpu = c.webgpu && c.backend !== 'cpu';
    $('caps').textContent = gpu
      ? `Runs on the graphics card (WebGPU: ${c.adapter?.description || c.adapter?.vendor || 'GPU'}${c.shaderF16 ? ', 16-bit shaders' : ''}).`
      : CPU_NOTICE;
    $('caps').dataset.backend = gpu ? 'webgpu' : 'cpu';
    if (c.notice) console.info(`onestep-sr: ${c.notice}`);
  } catch (e) {
    $('caps').textContent = `Could not start the engine: ${(e as Error).message}`;
  }
}
