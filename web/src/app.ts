// The upload page: the element, what this browser can do, the cached models, and the
// offline service worker with an "update available" prompt.
import { Upscaler, capabilities } from './client';
import './element';

export { Upscaler, capabilities };

const $ = (id: string) => document.getElementById(id)!;

async function showCapabilities() {
  const c = await capabilities();
  $('caps').textContent = c.webgpu
    ? `WebGPU: ${c.adapter.description || c.adapter.vendor || 'adapter'}${c.adapter.isFallbackAdapter ? ' (software)' : ''}, shader-f16 ${c.shaderF16 ? 'yes' : 'no'}`
    : c.notice;
}

async function showCache() {
  const list = $('cache');
  list.replaceChildren();
  for (const m of await Upscaler.cached()) {
    const li = document.createElement('li');
    li.textContent = `${m.modelId} — ${(m.bytes / 1e6).toFixed(1)} MB${m.complete ? '' : ' (partial)'} `;
    const del = document.createElement('button');
    del.textContent = 'Delete';
    del.onclick = async () => { await Upscaler.evict(m.url); showCache(); };
    li.append(del);
    list.append(li);
  }
}

function serviceWorker() {
  if (!('serviceWorker' in navigator) || location.protocol === 'file:') return;
  const prompt = (w: ServiceWorker) => {
    const b = $('update') as HTMLButtonElement;
    b.hidden = false;
    b.onclick = () => w.postMessage('skipWaiting');
  };
  const hadController = Boolean(navigator.serviceWorker.controller);
  navigator.serviceWorker.register('./sw.js').then((reg) => {
    if (reg.waiting && hadController) prompt(reg.waiting);
    reg.addEventListener('updatefound', () => {
      const w = reg.installing!;
      w.addEventListener('statechange', () => { if (w.state === 'installed' && navigator.serviceWorker.controller) prompt(w); });
    });
  });
  // The shell is cached once a service worker is active.
  navigator.serviceWorker.ready.then(() => { $('offline').hidden = false; });
  let reloaded = false;
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    if (hadController && !reloaded) { reloaded = true; location.reload(); }
  });
}

if (typeof document !== 'undefined' && document.getElementById('caps')) {
  showCapabilities().catch((e) => ($('caps').textContent = String(e)));
  showCache().catch(() => {});
  document.querySelector('onestep-upscaler')?.addEventListener('result', () => showCache());
  serviceWorker();
}
