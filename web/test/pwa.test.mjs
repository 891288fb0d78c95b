// The installable, offline app: the manifest's PNG icons (maskable) and share_target; the
// first visit says a model is needed before it works offline (not "Ready to work offline",
// which comes once the model is stored); after one visit, offline, a reload shows the page and
// "Ready to work offline", and an upscale
// with the cached default model succeeds (the CLI's pixels); a shared photo (POST to the
// share target, handled by the service worker) lands in the queue; a new deployment shows
// "Update available" and takes over on click. CPU fallback (the CPU-only wasm package: the
// WebGPU one is never fetched); no request leaves 127.0.0.1.
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { after, before, test } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { browser, onestep, root, scratch, server } from './helpers.mjs';
import { pngDiff, readPng } from './png.mjs';
import { PHOTO, assertLocal, download, openPage, recordRequests } from './ui.mjs';

let srv, out, copy;

before(async () => {
  out = scratch();
  onestep('upscale', PHOTO, '-o', `${out}/native.png`, '--device', 'cpu');
  // A second deployment of the app under /v/, whose service worker the test changes.
  copy = `${scratch()}/v`;
  cpSync(`${root}/web/dist`, copy, { recursive: true, filter: (f) => !f.includes('/pkg/') && !f.endsWith('.map') });
  srv = await server({ '/v/pkg/': `${root}/pkg`, '/v/': copy });
});
after(() => srv.close());

test('both wasm packages and the scripts go compressed when the browser takes it, as the build made them', async () => {
  const fetchWith = (path, encoding) => new Promise((ok, fail) => {
    get(`${srv.url}${path}`, { headers: encoding ? { 'accept-encoding': encoding } : {} }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c)).on('end', () => ok({ headers: res.headers, body: Buffer.concat(parts) }));
    }).on('error', fail);
  });
  const wire = {};
  for (const pkg of ['pkg', 'pkg/cpu']) {
    const raw = readFileSync(`${root}/${pkg}/onestep_sr_bg.wasm`);
    const br = await fetchWith(`/${pkg}/onestep_sr_bg.wasm`, 'gzip, deflate, br, zstd');
    assert.equal(br.headers['content-encoding'], 'br', pkg);
    assert.equal(br.headers['content-type'], 'application/wasm', pkg);
    assert.ok(br.body.length < raw.length / 3, `${pkg}: ${br.body.length} bytes on the wire for ${raw.length}`);
    assert.ok(brotliDecompressSync(br.body).equals(raw), pkg);
    const plain = await fetchWith(`/${pkg}/onestep_sr_bg.wasm`, '');
    assert.equal(plain.headers['content-encoding'], undefined, pkg);
    assert.ok(plain.body.equals(raw), pkg);
    wire[pkg] = br.body.length;
  }
  console.log(`on the wire (brotli): pkg/ ${wire.pkg} B, pkg/cpu/ ${wire['pkg/cpu']} B`);
  // The CPU package is what a browser without WebGPU downloads: under 1 MB.
  assert.ok(wire['pkg/cpu'] < 1_000_000, `pkg/cpu/ is ${wire['pkg/cpu']} bytes on the wire`);
  assert.ok(wire['pkg/cpu'] < wire.pkg / 2, 'the CPU package is the small one');
  const gz = await fetchWith('/app.js', 'gzip');
  assert.equal(gz.headers['content-encoding'], 'gzip');
  assert.ok(gunzipSync(gz.body).equals(readFileSync(`${root}/web/dist/app.js`)));
  // Nothing under /models/ is compressed by the build: shards go as stored.
  const shard = await fetchWith('/models/realesrgan-x4plus/manifest.json', 'br');
  assert.equal(shard.headers['content-encoding'], undefined);
});

test('the manifest: PNG icons at 192 and 512 (maskable), a share target', async () => {
  const res = await fetch(`${srv.url}/manifest.webmanifest`);
  assert.equal(res.headers.get('content-type'), 'application/manifest+json');
  const m = await res.json();
  for (const size of [192, 512]) {
    const icon = m.icons.find((i) => i.sizes === `${size}x${size}` && i.type === 'image/png' && i.purpose.includes('maskable'));
    assert.ok(icon, `a maskable ${size} px PNG icon`);
    const png = readPng(Buffer.from(await (await fetch(`${srv.url}/${icon.src}`)).arrayBuffer()));
    assert.deepEqual([png.width, png.height], [size, size]);
    // Maskable: the corners (outside the safe zone) are the opaque background.
    assert.deepEqual([...png.data.subarray(0, 4)], [0x1d, 0x35, 0x57, 255]);
  }
  assert.equal(m.display, 'standalone');
  assert.equal(m.share_target.method, 'POST');
  assert.equal(m.share_target.enctype, 'multipart/form-data');
  assert.equal(m.share_target.params.files[0].name, 'images');
});

test('offline after one visit: "Ready to work offline" only once a model is stored; offline, the page and an upscale with the cached model; a shared photo lands in the queue', async () => {
  const t0 = Date.now();
  srv.clear();
  const ctx = await browser({ webgpu: false });
  const requests = recordRequests(ctx);
  try {
    let page = await openPage(ctx, `${srv.url}/`);
    // The shell is cached, no model yet: that is what the page says.
    await page.getByText('Works offline once a model is downloaded').waitFor({ timeout: 60_000 });
    assert.equal(await page.getByText('Ready to work offline').count(), 0, 'not ready offline before a model is stored');
    // The first visit's upscale puts the model in IndexedDB: now it is ready.
    await page.getByLabel('Choose image').setInputFiles(`${root}/${PHOTO}`);
    await page.getByRole('button', { name: 'Upscale', exact: true }).click();
    await page.getByRole('link', { name: 'Download', exact: true }).waitFor({ state: 'visible', timeout: 120_000 });
    await page.getByText('Ready to work offline').waitFor({ timeout: 30_000 });
    const t1 = Date.now();
    // No WebGPU here: the worker took the CPU package, and neither it nor the service worker
    // fetched the WebGPU one (what reached the server, the install's precache included).
    const wasm = [...srv.counts.keys()].filter((p) => p.endsWith('.wasm'));
    assert.deepEqual(wasm, ['/pkg/cpu/onestep_sr_bg.wasm'], 'the wasm files fetched on the first visit');

    await ctx.setOffline(true);
    srv.clear();
    await page.reload();
    assert.equal(await page.locator('h1').textContent(), 'onestep-sr');
    await page.getByText('Ready to work offline').waitFor({ timeout: 30_000 });
    assert.equal(await page.locator('#model').inputValue(), 'realesrgan-x4plus', 'the catalog, from the cache');
    await page.getByLabel('Choose image').setInputFiles(`${root}/${PHOTO}`);
    await page.getByRole('button', { name: 'Upscale', exact: true }).click();
    const link = page.getByRole('link', { name: 'Download', exact: true });
    await link.waitFor({ state: 'visible', timeout: 120_000 });
    const d = await download(page, link);
    assert.equal(d.name, 'chelsea_16_x4.png');
    const diff = pngDiff(d.bytes, readFileSync(`${out}/native.png`));
    assert.ok(diff.max <= 1, `offline: max difference ${diff.max}`);
    const t2 = Date.now();

    // Share a photo into the app: a multipart POST to the share target (as the OS share
    // sheet sends it), answered by the service worker, even offline.
    await page.evaluate(async (bytes) => {
      const form = document.createElement('form');
      form.method = 'POST';
      form.enctype = 'multipart/form-data';
      form.action = './share-target';
      const input = document.createElement('input');
      input.type = 'file';
      input.name = 'images';
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(bytes)], 'shared-photo.png', { type: 'image/png' }));
      input.files = dt.files;
      form.append(input);
      document.body.append(form);
      form.submit();
    }, [...readFileSync(`${root}/${PHOTO}`)]).catch(() => { /* the navigation ends the evaluation */ });
    await page.waitForURL(/\/$/, { timeout: 30_000 });
    const shared = page.locator('#queue li').filter({ hasText: 'shared-photo.png' });
    await shared.waitFor({ timeout: 30_000 });
    // Listed at once, then checked by the engine (its size shown).
    await shared.filter({ hasNotText: 'Checking' }).waitFor({ timeout: 30_000 });
    assert.match(await shared.textContent(), /16×16/, 'the shared photo was read');
    // Offline means offline: the server saw nothing since the reload but the browser's own
    // service-worker update check (/sw.js), which Chromium makes outside the page's emulated
    // network conditions and which, really offline, fails harmlessly.
    assert.deepEqual([...srv.counts.keys()].filter((p) => p !== '/sw.js'), [], 'requests that reached the server while offline');
    assert.deepEqual(page.errors.filter((e) => !/ERR_INTERNET_DISCONNECTED|Failed to load resource/.test(e)), []);
    assertLocal(requests, 'the PWA test');
    console.log(`first visit ${t1 - t0} ms, offline reload + upscale ${t2 - t1} ms, share ${Date.now() - t2} ms`);
  } finally {
    await ctx.close();
  }
});

test('a new deployment: "Update available", and a click switches to it', async () => {
  const t0 = Date.now();
  const ctx = await browser({ webgpu: false });
  const requests = recordRequests(ctx);
  try {
    const page = await openPage(ctx, `${srv.url}/v/`);
    await page.getByText('Works offline once a model is downloaded').waitFor({ timeout: 60_000 });
    const version = () => page.evaluate(() => new Promise((ok) => {
      navigator.serviceWorker.addEventListener('message', (e) => ok(e.data.version), { once: true });
      navigator.serviceWorker.controller.postMessage('version');
    }));
    await page.waitForFunction(() => navigator.serviceWorker.controller);
    const v1 = await version();
    // Deploy a new version (another app.js, so another content hash).
    const sw = readFileSync(`${copy}/sw.js`, 'utf8');
    writeFileSync(`${copy}/sw.js`, sw.replaceAll(v1, `${v1}-next`));
    writeFileSync(`${copy}/app.js`, `${readFileSync(`${copy}/app.js`, 'utf8')}\n// next\n`);
    await page.reload();
    const update = page.getByRole('button', { name: 'Update available — reload' });
    await update.waitFor({ timeout: 60_000 });
    await Promise.all([page.waitForEvent('load', { timeout: 60_000 }), update.click()]);
    await page.waitForFunction(() => navigator.serviceWorker.controller);
    assert.equal(await version(), `${v1}-next`);
    assert.ok(await page.evaluate(async (v) => (await caches.keys()).includes(v) === false, v1), 'the old cache is gone');
    assertLocal(requests, 'the update test');
    console.log(`update: ${Date.now() - t0} ms`);
  } finally {
    await ctx.close();
  }
});
