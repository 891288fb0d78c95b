// Weight delivery under faults: a local server injects 404s, HTML pages, short and damaged
// shards, dropped connections and a too-small quota. Each must end in a clear error or a
// resume, and never in a model built from bad bytes. The real Real-ESRGAN weights are
// re-sharded into 4 MiB shards so that a download has several shards to resume between.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { browser, harness, onestep, scratch, server } from './helpers.mjs';

let srv, dir, manifest, shards;
const url = (base) => `${base}/m/manifest.json`;

before(async () => {
  dir = scratch();
  onestep('convert', 'reshard', 'models/realesrgan-x4plus', '--out', `${dir}/m`, '--shard-mib', '4');
  manifest = JSON.parse(readFileSync(`${dir}/m/manifest.json`, 'utf8'));
  shards = manifest.shards.map((s) => `/m/${s.file}`);
  assert.ok(shards.length >= 5, `${shards.length} shards`);
  srv = await server({ '/m/': `${dir}/m` });
});
after(() => srv.close());

/// Load in a fresh page; { ok, info } or { ok: false, message }, plus the cache listing.
async function load(page, opts = {}) {
  return page.evaluate(async ({ u, opts }) => {
    let r;
    try {
      // Delivery only: the model is built (every tensor shape-checked) on the CPU backend;
      // what it computes is the parity tests' business.
      const up = await window.pkg.Upscaler.load(u, { backend: 'cpu', ...opts });
      r = { ok: true, info: up.info };
    } catch (e) {
      r = { ok: false, message: String(e && e.message || e), isError: e instanceof Error };
    }
    r.cached = await window.pkg.Upscaler.cached();
    return r;
  }, { u: url(srv.url), opts });
}

async function withPage(fn, opts = {}) {
  const ctx = await browser(opts);
  try {
    return await fn(await harness(ctx, srv.url, opts));
  } finally {
    await ctx.close();
  }
}

for (const [kind, pattern] of [
  ['status404', /shard 3 of \d+ \(shard-00002\.bin\): the server answered HTTP 404/],
  ['html', /shard 3 of \d+ .*HTML page instead of weights/],
  ['truncate', /shard 3 of \d+ .*truncated or has the wrong size/],
  ['corrupt', /shard 3 of \d+ .*failed its SHA-256 check/],
  ['drop', /shard 3 of \d+ .*the connection failed after .*resumes from this shard/],
]) {
  test(`${kind} on a shard: a clear error, nothing bad cached, and the next load resumes`, async () => {
    srv.clear();
    srv.inject(shards[2], kind);
    await withPage(async (page) => {
      const r = await load(page);
      assert.equal(r.ok, false, 'the load must fail');
      assert.equal(r.isError, true, 'rejected with an Error');
      assert.match(r.message, pattern);
      // Only the two good shards before it were stored.
      assert.equal(r.cached.length, 1);
      assert.equal(r.cached[0].shards, 2);
      assert.equal(r.cached[0].complete, false);
      // The server is fixed: the next load fetches only what is missing.
      srv.clear();
      const again = await load(page);
      assert.equal(again.ok, true, again.message);
      assert.equal(again.info.fromCache, 2);
      assert.equal(again.info.fromNetwork, shards.length - 2);
      assert.equal(srv.requests('/m/shard-'), shards.length - 2);
      assert.equal(again.cached[0].complete, true);
    });
  });
}

test('a connection dropped once is retried and the load succeeds', async () => {
  srv.clear();
  srv.inject(shards[1], 'drop', 1);
  await withPage(async (page) => {
    const r = await load(page);
    assert.equal(r.ok, true, r.message);
    assert.equal(srv.requests(shards[1]), 2);
  });
});

test('a 404 manifest and a non-manifest are clear errors', async () => {
  srv.clear();
  await withPage(async (page) => {
    const r = await page.evaluate(async (base) => {
      const out = [];
      for (const u of [`${base}/m/missing.json`, `${base}/test/harness.html`]) {
        try { await window.pkg.Upscaler.load(u); out.push('loaded'); } catch (e) { out.push(e.message); }
      }
      return out;
    }, srv.url);
    assert.match(r[0], /cannot fetch the weight manifest .*HTTP 404/);
    assert.match(r[1], /is not a weight manifest/);
  });
});

test('too little storage quota fails before downloading', async () => {
  srv.clear();
  const init = () => {
    navigator.storage.estimate = async () => ({ quota: 10_000_000, usage: 2_000_000 });
  };
  await withPage(async (page) => {
    const r = await load(page);
    assert.equal(r.ok, false);
    assert.match(r.message, /not enough storage for this model: it needs 33 MB more and the browser allows 8 MB/);
    assert.equal(srv.requests('/m/shard-'), 0);
  }, { init });
});

test('a quota error while storing keeps going from memory and says so', async () => {
  srv.clear();
  const init = () => {
    const put = IDBObjectStore.prototype.put;
    IDBObjectStore.prototype.put = function (value, key) {
      if (this.name === 'shards') throw new DOMException('quota', 'QuotaExceededError');
      return put.call(this, value, key);
    };
  };
  await withPage(async (page) => {
    const r = await load(page);
    assert.equal(r.ok, true, r.message);
    assert.match(r.info.notices.join(' '), /storage quota is exhausted: the model runs from memory/);
    assert.equal(r.info.fromNetwork, shards.length);
  }, { init });
});

test('cancelling a load with an AbortSignal rejects with "cancelled"', async () => {
  srv.clear();
  await withPage(async (page) => {
    const r = await page.evaluate(async (u) => {
      const ac = new AbortController();
      const p = window.pkg.Upscaler.load(u, { signal: ac.signal, onProgress: (p) => { if (p.shard >= 2) ac.abort(); } });
      try { await p; return 'loaded'; } catch (e) { return e.message; }
    }, url(srv.url));
    assert.equal(r, 'cancelled');
  });
});
