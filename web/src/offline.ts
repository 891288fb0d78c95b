// The upload page's offline side: registers the service worker (sw.ts), says what works
// offline, and offers "Update available — reload" when a new version waits.
// "Ready to work offline" only when it is true: the app shell is cached (a service worker is
// active) and a whole model is stored on this device. With the shell alone it says that a
// model is needed first; before the service worker is active it says nothing.
import { page } from './state';
import { $ } from './ui';

let shellCached = false;
/** Set once the stored models were read (manager.ts): until then nothing is claimed. */
let modelsKnown = false;

export function showOffline(models?: { known: boolean }) {
  if (models) modelsKnown = models.known;
  const pill = $('offline');
  const ready = page.cached.some((c) => c.complete);
  pill.hidden = !shellCached || !modelsKnown;
  pill.textContent = ready ? 'Ready to work offline' : 'Works offline once a model is downloaded';
  pill.classList.toggle('ok', ready);
}

export function serviceWorker() {
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
  navigator.serviceWorker.ready.then(() => { shellCached = true; showOffline(); });
  let reloaded = false;
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    if (hadController && !reloaded) { reloaded = true; location.reload(); }
  });
}
