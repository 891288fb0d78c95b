// Browser services the Rust side calls through wasm-bindgen: streaming fetch, IndexedDB,
// the storage manager, the WebGPU adapter's facts and pixels in and out. Plain JS so it
// runs unchanged in a page or a worker; no arithmetic on weights or images happens here.

const DB_NAME = 'onestep-sr';
const DB_VERSION = 1;
let dbPromise = null;

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new DOMException('transaction aborted', 'AbortError'));
  });
}

function db() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      if (typeof indexedDB === 'undefined') throw new Error('IndexedDB is not available here');
      const r = indexedDB.open(DB_NAME, DB_VERSION);
      // shards: `${manifestHash}/${index}` -> Uint8Array; models: manifest URL -> record.
      r.onupgradeneeded = () => {
        r.result.createObjectStore('shards');
        r.result.createObjectStore('models');
      };
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
      r.onblocked = () => reject(new Error('IndexedDB is blocked by another tab'));
    });
    dbPromise.catch(() => { dbPromise = null; });
  }
  return dbPromise;
}

export async function idbGet(store, key) {
  const d = await db();
  return (await request(d.transaction(store).objectStore(store).get(key))) ?? null;
}

export async function idbPut(store, key, value) {
  const d = await db();
  const tx = d.transaction(store, 'readwrite');
  tx.objectStore(store).put(value, key);
  await done(tx);
}

export async function idbKeys(store, prefix) {
  const d = await db();
  const range = prefix ? IDBKeyRange.bound(prefix, prefix + '\uffff') : undefined;
  return request(d.transaction(store).objectStore(store).getAllKeys(range));
}

export async function idbValues(store) {
  const d = await db();
  return request(d.transaction(store).objectStore(store).getAll());
}

export async function idbDelete(store, key) {
  const d = await db();
  const tx = d.transaction(store, 'readwrite');
  tx.objectStore(store).delete(key);
  await done(tx);
}

export async function idbDeletePrefix(store, prefix) {
  const d = await db();
  const tx = d.transaction(store, 'readwrite');
  tx.objectStore(store).delete(IDBKeyRange.bound(prefix, prefix + '\uffff'));
  await done(tx);
}

/// The name of a DOMException (e.g. 'QuotaExceededError'), else ''.
export function errorName(e) {
  return (e && typeof e === 'object' && typeof e.name === 'string') ? e.name : '';
}

export function errorMessage(e) {
  if (e && typeof e === 'object' && 'message' in e) return `${e.name ?? 'Error'}: ${e.message}`;
  return String(e);
}

export function absoluteUrl(url) {
  return new URL(url, globalThis.location?.href).href;
}

export function resolveUrl(file, base) {
  return new URL(file, new URL(base, globalThis.location?.href)).href;
}

/// GET `url` as text: { status, type, text }.
export async function fetchText(url, signal) {
  const r = await fetch(url, { signal, cache: 'no-cache' });
  return { status: r.status, type: r.headers.get('content-type') ?? '', text: r.ok ? await r.text() : '' };
}

/// GET `url` as bytes, streamed, reporting bytes received; stops reading past `limit`
/// bytes. { status, type, bytes } (bytes empty unless the status is 2xx).
export async function fetchBytes(url, signal, limit, onBytes) {
  // The shards live in IndexedDB: the HTTP cache would only hold a second copy.
  const r = await fetch(url, { signal, cache: 'no-store' });
  const type = r.headers.get('content-type') ?? '';
  if (!r.ok || !r.body) return { status: r.status, type, bytes: new Uint8Array(0) };
  const out = new Uint8Array(limit + 1);
  let n = 0;
  const reader = r.body.getReader();
  for (;;) {
    const { done: end, value } = await reader.read();
    if (end) break;
    const take = Math.min(value.length, out.length - n);
    out.set(value.subarray(0, take), n);
    n += take;
    onBytes(n);
    if (n > limit) { await reader.cancel(); break; }
  }
  return { status: r.status, type, bytes: out.subarray(0, n) };
}

/// { quota, usage } from the storage manager, or null when there is none.
export async function storageEstimate() {
  try {
    const e = await globalThis.navigator?.storage?.estimate?.();
    return e ? { quota: e.quota ?? 0, usage: e.usage ?? 0 } : null;
  } catch {
    return null;
  }
}

export async function storagePersist() {
  try {
    return (await globalThis.navigator?.storage?.persist?.()) ?? false;
  } catch {
    return false;
  }
}

/// The WebGPU adapter's facts, or null when there is no adapter.
export async function gpuAdapter() {
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) return null;
  let a = null;
  try { a = await gpu.requestAdapter({ powerPreference: 'high-performance' }); } catch { return null; }
  if (!a) return null;
  const info = a.info ?? {};
  const limits = {};
  for (const k of ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize',
    'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage']) limits[k] = Number(a.limits[k]);
  return {
    vendor: info.vendor ?? '', architecture: info.architecture ?? '', description: info.description ?? '',
    isFallbackAdapter: Boolean(info.isFallbackAdapter ?? a.isFallbackAdapter ?? false),
    shaderF16: a.features.has('shader-f16'), features: [...a.features].sort(), limits,
  };
}

// The loss of this thread's WebGPU device (burn's runtime starts one per thread and cannot
// start another): { reason, message } once its `lost` promise resolved.
let lostInfo = null;
let onLost;
const lost = new Promise((resolve) => { onLost = resolve; });

/// Watches the devices requested until the returned function is called (around burn's
/// device start-up): burn hides the GPUDevice, and only its `lost` promise tells why it died.
export function watchDeviceRequests() {
  const proto = globalThis.GPUAdapter?.prototype;
  if (!proto) return () => {};
  const request = proto.requestDevice;
  proto.requestDevice = async function (...args) {
    const device = await request.apply(this, args);
    device.lost.then((info) => {
      lostInfo ??= { reason: String(info?.reason ?? 'unknown'), message: String(info?.message ?? '') };
      onLost(lostInfo);
    });
    return device;
  };
  return () => { proto.requestDevice = request; };
}

export function deviceLostInfo() {
  return lostInfo;
}

export function deviceLost() {
  return lost;
}

/// Whether `v` is a Blob (a File is one): encoded bytes, decoded in wasm as the CLI does.
export function isBlob(v) {
  return typeof Blob !== 'undefined' && v instanceof Blob;
}

/// A Blob's bytes; with `limit`, only the first `limit` bytes (an image's header).
export async function blobBytes(blob, limit) {
  return new Uint8Array(await (limit ? blob.slice(0, limit) : blob).arrayBuffer());
}

/// A Blob's size in bytes.
export function blobSize(blob) {
  return blob.size;
}

/// A PNG Blob of `bytes` (copied: they are a view of wasm memory).
export function pngBlob(bytes) {
  return new Blob([bytes.slice()], { type: 'image/png' });
}

/// Milliseconds on a monotonic clock.
export function now() {
  return globalThis.performance?.now() ?? Date.now();
}

/// RGBA pixels of an ImageData, an ImageBitmap or anything drawImage takes: { width, height, data }.
/// A canvas stores premultiplied alpha: under low alpha the colour of an ImageBitmap is
/// rounded away here. Encoded files (Blobs) never take this path.
export function imagePixels(img) {
  if (typeof ImageData !== 'undefined' && img instanceof ImageData) return img;
  const width = img?.width ?? img?.displayWidth, height = img?.height ?? img?.displayHeight;
  if (!width || !height) throw new TypeError('upscale() takes a File or Blob (PNG, JPEG or WebP), an ImageData or an ImageBitmap');
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, width, height);
}

export function makeImageData(rgba, width, height) {
  // Copies: `rgba` is a view of wasm memory.
  return new ImageData(new Uint8ClampedArray(rgba), width, height);
}

/// Resolves on the next task: queued events (a worker's messages, an abort) run first.
export function nextTask() {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => { ch.port1.close(); resolve(); };
    ch.port2.postMessage(null);
  });
}

/// Calls `f` when `signal` aborts; returns a function that stops listening.
export function onAbort(signal, f) {
  if (!signal || typeof signal.addEventListener !== 'function') return () => {};
  signal.addEventListener('abort', f, { once: true });
  return () => signal.removeEventListener('abort', f);
}

/// A Web Lock (shared by every tab and worker of the origin), held until the returned
/// function is called; without Web Locks a no-op. `signal` aborts the wait.
export function lockAcquire(name, signal) {
  if (!globalThis.navigator?.locks) return Promise.resolve(() => {});
  return new Promise((granted, refused) => {
    navigator.locks
      .request(name, signal ? { signal } : {}, () => new Promise((release) => granted(release)))
      .catch(refused);
  });
}

/// Bytes `start..end` of a File or Blob, synchronously (FileReaderSync: workers only), so a
/// converter reads each tensor where it lies instead of the whole file.
export function readSlice(blob, start, end) {
  if (typeof FileReaderSync === 'undefined') throw new Error('reading files in pieces needs a worker (FileReaderSync)');
  return new Uint8Array(new FileReaderSync().readAsArrayBuffer(blob.slice(start, end)));
}

/// A random hex id (model keys for models made on this device).
export function randomId() {
  return Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('');
}
