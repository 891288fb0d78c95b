// Offline: the app shell and the wasm package are cached at install; weights are not (they
// live in IndexedDB, shard by shard). A new version waits until the page says skipWaiting.
/// <reference lib="webworker" />
const sw = self as unknown as ServiceWorkerGlobalScope;
// Filled in by the build: the app shell and every file of pkg/, and a version per build.
declare const __SHELL__: string[];
declare const __VERSION__: string;
const VERSION = __VERSION__;
const SHELL = __SHELL__;

sw.addEventListener('install', (e) => e.waitUntil(caches.open(VERSION).then((c) => c.addAll(SHELL))));

sw.addEventListener('activate', (e) => e.waitUntil((async () => {
  for (const k of await caches.keys()) if (k !== VERSION) await caches.delete(k);
  await sw.clients.claim();
})()));

sw.addEventListener('message', (e) => { if (e.data === 'skipWaiting') sw.skipWaiting(); });

sw.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  // Weights and anything cross-origin go straight to the network.
  if (e.request.method !== 'GET' || url.origin !== location.origin || url.pathname.includes('/models/')) return;
  e.respondWith((async () => {
    const hit = await caches.match(e.request, { ignoreSearch: true });
    if (hit) return hit;
    return fetch(e.request);
  })());
});
