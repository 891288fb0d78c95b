// The page in the other engines, as a person uses it: Firefox ESR and WebKitGTK's MiniBrowser
// (Safari's engine), both from Debian (scripts/deps.sh installs them). Neither has WebGPU
// here, so each runs the wasm CPU path. Choose a model (the 1.2 MB realesr-animevideov3-x2,
// to stay cheap), "Choose image" (a 16x16 photo, one tile), "Upscale", "Download": the
// downloaded PNG is the native CLI's within 1 level on every pixel and channel. A missing
// engine fails the test (a change that breaks Firefox or Safari users must fail CI).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { firefox, webkit } from './engines.mjs';
import { onestep, root, scratch, server } from './helpers.mjs';
import { pngDiff, readPng } from './png.mjs';
import { PHOTO } from './ui.mjs';

const MODEL = 'realesr-animevideov3-x2';
const NAME = 'chelsea_16_x2.png';
let srv, dir, expected;

before(async () => {
  dir = scratch();
  onestep('upscale', PHOTO, '-o', `${dir}/cli.png`, '--device', 'cpu', '--model', `models/${MODEL}`);
  expected = readFileSync(`${dir}/cli.png`);
  srv = await server();
});
after(async () => {
  await srv?.close();
});

for (const [label, open] of [['Firefox ESR', firefox], ['WebKitGTK MiniBrowser', webkit]]) {
  test(`${label}: choose a model, Choose image → Upscale → Download is the CLI's PNG within 1 level`, async () => {
    const t0 = Date.now();
    const downloads = join(dir, label.split(' ')[0]);
    mkdirSync(downloads);
    const b = await open(downloads);
    try {
      await b.goto(`${srv.url}/`);
      await wait(b, `document.querySelector('#model option[value="${MODEL}"]') && document.getElementById('caps').textContent !== 'Checking WebGPU…'`, 30_000, 'the page did not start');
      console.log(`${b.name}: ${await b.text('#caps')}`);
      await b.choose('#model', MODEL);
      await b.upload('#file', join(root, PHOTO));
      await wait(b, `document.querySelectorAll('#queue li').length === 1`, 10_000, 'the photo was not queued');
      await b.click('//button[@id="go" and normalize-space()="Upscale"]');
      // The wasm (about 24 MB from the local server), the model, then one tile.
      await wait(b, `/Done|Failed/.test(document.getElementById('status').textContent)`, 120_000, 'the upscale did not end');
      assert.match(await b.text('#status'), new RegExp(`^Done in [\\d.]+ s: ${NAME}\\.$`), `${b.name}: the run's status line`);
      await b.click('//a[@id="download" and normalize-space()="Download"]');
      const got = await downloaded(downloads, NAME);
      const diff = pngDiff(got, expected);
      console.log(`${b.name}: page vs CLI ${JSON.stringify(diff)}, ${Buffer.compare(got, expected) === 0 ? 'same bytes' : 'bytes differ'}`);
      assert.deepEqual(diff.size, [32, 32]);
      assert.ok(diff.max <= 1, `${b.name}: max difference ${diff.max} levels (${diff.n} values)`);
      if (b.errors) assert.deepEqual(b.errors, [], `${b.name}: errors on the page`);
    } finally {
      await b.close();
    }
    console.log(`${label}: ${Date.now() - t0} ms`);
  });
}

/** `b.until(js)`, or an error that says which step stalled and what the page's status line read. */
async function wait(b, js, ms, what) {
  try {
    await b.until(js, ms);
  } catch (e) {
    const status = await b.text('#status').catch(() => '?');
    throw new Error(`${b.name}: ${what} within ${ms / 1000} s (status: "${status}"; ${e.message.split('\n')[0]})`);
  }
}

/** The download once the browser has finished writing it (no partial file, a whole PNG). */
async function downloaded(folder, name) {
  const file = join(folder, name);
  for (const t0 = Date.now(); Date.now() - t0 < 30_000;) {
    const partial = readdirSync(folder).some((f) => /\.(part|download)$/.test(f));
    if (!partial && existsSync(file)) {
      const bytes = readFileSync(file);
      try {
        readPng(bytes);
        return bytes;
      } catch { /* still being written */ }
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
  throw new Error(`no ${name} in the download folder within 30 s (found: ${readdirSync(folder).join(', ') || 'nothing'})`);
}
