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

/// A second page of the same origin (another tab), started like `harness`.
async function secondPage(ctx) {
  const page = await ctx.newPage();
  await page.goto(`${srv.url}/test/harness.html`);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 120_000 });
  return page;
}

test('two tabs loading one model at once: one download of each shard, both get the model; an eviction waits for a load', async () => {
  srv.clear();
  const ctx = await browser({ webgpu: false });
  try {
    const a = await harness(ctx, srv.url);
    const b = await secondPage(ctx);
    const [ra, rb] = await Promise.all([load(a), load(b)]);
    assert.equal(ra.ok, true, ra.message);
    assert.equal(rb.ok, true, rb.message);
    // The Web Lock per model: the second tab waited and read the first one's cache.
    for (const s of shards) assert.equal(srv.requests(s), 1, `${s} downloaded ${srv.requests(s)} times`);
    assert.deepEqual([ra.info.fromNetwork + rb.info.fromNetwork, ra.info.fromCache + rb.info.fromCache], [shards.length, shards.length]);
    const entry = rb.cached.find((c) => c.url === url(srv.url));
    assert.ok(entry && entry.complete, JSON.stringify(rb.cached));

    // Evict from tab B while tab A loads again from scratch: the eviction waits for the load,
    // which completes from whole, checked shards; afterwards nothing of the model is stored.
    await b.evaluate((u) => window.pkg.Upscaler.evict(u), url(srv.url));
    srv.clear();
    const loading = a.evaluate(async (u) => {
      const up = await window.pkg.Upscaler.load(u, { backend: 'cpu' });
      return { info: up.info, at: performance.timeOrigin + performance.now() };
    }, url(srv.url));
    while (srv.requests('/m/shard-') === 0) await new Promise((r) => setTimeout(r, 20));
    const evicting = b.evaluate(async (u) => ({ evicted: await window.pkg.Upscaler.evict(u), at: performance.timeOrigin + performance.now() }), url(srv.url));
    const [la, eb] = await Promise.all([loading, evicting]);
    assert.equal(la.info.fromNetwork, shards.length);
    assert.equal(eb.evicted, true);
    assert.ok(eb.at >= la.at, `the eviction finished ${(la.at - eb.at).toFixed(0)} ms before the load`);
    const left = await a.evaluate(() => window.pkg.Upscaler.cached());
    assert.equal(left.filter((c) => c.url === url(srv.url)).length, 0, JSON.stringify(left));
  } finally {
    await ctx.close();
  }
});
