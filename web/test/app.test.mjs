// The front end: the upload page and <onestep-upscaler> run inference in a worker (the page
// keeps animating), and the service worker serves the app offline.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { join } from 'node:path';
import { browser, root, server } from './helpers.mjs';

let srv;
before(async () => { srv = await server(); });
after(() => srv.close());

test('the element upscales a dropped file in a worker while the page stays responsive (CPU fallback)', async () => {
  const ctx = await browser({ webgpu: false });
  try {
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${srv.url}/`);
    await page.waitForFunction(() => document.getElementById('caps').textContent !== 'Checking WebGPU…');
    assert.match(await page.textContent('#caps'), /no WebGPU adapter/);
    // Count main-thread ticks during the run: a blocked page would not tick.
    await page.evaluate(() => {
      window.ticks = 0;
      setInterval(() => window.ticks++, 50);
      document.querySelector('onestep-upscaler').addEventListener('result', (e) => {
        window.result = [e.detail.width, e.detail.height, window.ticks];
      });
    });
    await page.locator('onestep-upscaler input[type=file]').setInputFiles(join(root, 'tests/fixtures/realesrgan/chelsea_16.png'));
    await page.waitForFunction(() => window.result, null, { timeout: 300_000 });
    const [w, h, ticks] = await page.evaluate(() => window.result);
    assert.deepEqual([w, h], [64, 64]);
    assert.ok(ticks > 10, `the page ticked ${ticks} times during the run`);
    assert.match(await page.locator('onestep-upscaler .status').textContent(), /^Done in/);
    assert.ok(await page.locator('onestep-upscaler a.download').isVisible());
    // The cache list shows the model.
    await page.waitForFunction(() => document.querySelectorAll('#cache li').length === 1);
    assert.deepEqual(errors, []);
  } finally {
    await ctx.close();
  }
});

test('the service worker serves the app shell offline', async () => {
  const ctx = await browser({ webgpu: false });
  try {
    const page = await ctx.newPage();
    await page.goto(`${srv.url}/`);
    await page.evaluate(() => navigator.serviceWorker.ready);
    await page.waitForSelector('#offline:not([hidden])', { timeout: 30_000 });
    await ctx.setOffline(true);
    await page.reload();
    assert.equal(await page.locator('h1').textContent(), 'onestep-sr');
    await page.waitForFunction(() => document.getElementById('caps').textContent !== 'Checking WebGPU…');
    assert.match(await page.textContent('#caps'), /no WebGPU adapter/, 'the wasm package ran offline');
  } finally {
    await ctx.close();
  }
});
