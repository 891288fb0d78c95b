// Offline: the app shell and the CPU wasm package are cached at install, the WebGPU wasm when
// first fetched (a browser without WebGPU never fetches it), under a version that is a hash
// of their bytes (a new deployment = a new cache; the old one is deleted when the new
// worker takes over). Weights are not cached here: they live in IndexedDB, shard by shard.
// A new version waits until the page says skipWaiting (its "Update available" button).
// share_target: a photo shared into the installed app arrives as a POST to ./share-target;
// it is kept in the 'onestep-share' cache and the page (opened at ./?shared=N) takes it.
/// <reference lib="webworker" />
const sw = self as unknown as ServiceWorkerGlobalScope;
// Filled in by the build: the app shell and every file of pkg/ but the WebGPU wasm, that
// wasm, and a content hash of them all.
declare const __SHELL__: string[];
declare const __LAZY__: string[];
declare const __VERSION__: string;
const VERSION = __VERSION__;
const SHELL = __SHELL__;
const LAZY = new Set(__LAZY__.map((u) => new URL(u, sw.registration.scope).href));
const PREFIX = 'onestep-sr-';
const SHARE = 'onestep-share';
/** Fetched from the network first (a deployment may change it), the cached copy offline. */
const NETWORK_FIRST = /\/models\.json$/;

sw.addEventListener('install', (e) => e.waitUntil(caches.open(VERSION).then((c) => c.addAll(SHELL.map((u) => new Request(u, { cache: 'reload' }))))));

sw.addEventListener('activate', (e) => e.waitUntil((async () => {
  for (const k of await caches.keys()) if (k.startsWith(PREFIX) && k !== VERSION) await caches.delete(k);
  await sw.clients.claim();
})()));

sw.addEventListener('message', (e) => {
  if (e.data === 'skipWaiting') sw.skipWaiting();
  else if (e.data === 'version') e.source?.postMessage({ version: VERSION });
});

async function share(req: Request): Promise<Response> {
  let n = 0;
  try {
    const form = await req.formData();
    const cache = await caches.open(SHARE);
    for (const k of await cache.keys()) await cache.delete(k);
    for (const v of form.getAll('images')) {
      if (typeof v === 'string') continue;
      const file = v as File;
      await cache.put(new Request(new URL(`./share-inbox/${n}`, sw.registration.scope).href), new Response(file, {
        headers: { 'content-type': file.type || 'application/octet-stream', 'x-file-name': encodeURIComponent(file.name || `shared-${n}.png`) },
      }));
      n++;
    }
  } catch (e) {
    console.warn('share target:', e);
  }
  return Response.redirect(new URL(`./?shared=${n}`, sw.registration.scope).href, 303);
}

sw.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (url.origin !== location.origin) return;
  if (e.request.method === 'POST' && url.pathname.endsWith('/share-target')) {
    e.respondWith(share(e.request));
    return;
  }
  // Weights go straight to the network (the engine caches them in IndexedDB itself).
  if (e.request.method !== 'GET' || url.pathname.includes('/models/')) return;
  if (NETWORK_FIRST.test(url.pathname)) {
    e.respondWith((async () => {
      try {
        const res = await fetch(e.request);
        if (res.ok) {
          const copy = res.clone();
          e.waitUntil(caches.open(VERSION).then((c) => c.put(url.pathname, copy)).catch(() => {}));
        }
        return res;
      } catch (err) {
        const hit = await caches.match(url.pathname, { cacheName: VERSION });
        if (hit) return hit;
        throw err;
      }
    })());
    return;
  }
  e.respondWith((async () => {
    const cache = await caches.open(VERSION);
    // Navigations to the app (any query: ?shared=1, ?catalog=…) get the cached page.
    const scopePath = new URL(sw.registration.scope).pathname;
    const key = e.request.mode === 'navigate' && (url.pathname === scopePath || url.pathname === `${scopePath}index.html`)
      ? new URL('./', sw.registration.scope).href : e.request;
    const hit = await cache.match(key, { ignoreSearch: true });
    if (hit) return hit;
    const res = await fetch(e.request);
    if (res.ok && LAZY.has(url.href)) e.waitUntil(cache.put(url.href, res.clone()).catch(() => {}));
    return res;
  })());
});
