// `npm --prefix web run build`: the wasm packages pkg/ (WebGPU) and pkg/cpu/ (CPU only), each
// by cargo for wasm32, wasm-bindgen pinned to the crate's version and wasm-opt from the npm
// `binaryen` package, then the front end in web/dist/; prints the sizes (raw and compressed).
//
// Env: ONESTEP_WASM_OPT (default -O1; "none" skips wasm-opt), ONESTEP_CACHE, CARGO_TARGET_DIR;
// ONESTEP_WEB_ONLY=1 skips steps 1-3 (cargo, wasm-bindgen, wasm-opt) and rebuilds only
// web/dist from the pkg/ already there.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants as zlib, gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const web = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const root = resolve(web, '..');
const cache = process.env.ONESTEP_CACHE ?? join(homedir(), '.cache', 'onestep-sr');
const target = process.env.CARGO_TARGET_DIR ?? join(cache, 'target');
const pkg = join(root, 'pkg');
const dist = join(web, 'dist');

function run(cmd, args, opts = {}) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  execFileSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
}

/// wasm-bindgen's version in Cargo.lock: the CLI must match it exactly.
function bindgenVersion() {
  const lock = readFileSync(join(root, 'Cargo.lock'), 'utf8');
  const m = lock.match(/name = "wasm-bindgen"\nversion = "([^"]+)"/);
  if (!m) throw new Error('wasm-bindgen is not in Cargo.lock');
  return m[1];
}

/// The wasm-bindgen CLI at `version`: from PATH, else installed once into the cache.
function bindgenCli(version) {
  const tools = join(cache, 'tools');
  for (const bin of ['wasm-bindgen', join(tools, 'bin', 'wasm-bindgen')]) {
    try {
      if (execFileSync(bin, ['--version']).toString().trim() === `wasm-bindgen ${version}`) return bin;
    } catch { /* not there */ }
  }
  run('cargo', ['install', 'wasm-bindgen-cli', '--version', version, '--root', tools]);
  return join(tools, 'bin', 'wasm-bindgen');
}

const kb = (n) => `${(n / 1024).toFixed(0)} KiB`;
const mib = (n) => `${(n / 1048576).toFixed(2)} MiB`;

// Two packages with the same API: pkg/ (WebGPU, and the CPU backend for a device that fails
// to start) and pkg/cpu/ (the CPU backend only: cargo's `--no-default-features` drops the
// `webgpu` feature), which the worker loads when WebGPU will not run (web/src/packages.ts).
const PACKAGES = [
  { dir: pkg, cargo: [] },
  { dir: join(pkg, 'cpu'), cargo: ['--no-default-features'] },
];
const webOnly = process.env.ONESTEP_WEB_ONLY === '1';
const out = join(pkg, 'onestep_sr_bg.wasm');
const level = webOnly ? 'kept' : process.env.ONESTEP_WASM_OPT ?? '-O1';
if (webOnly) {
  for (const p of PACKAGES) {
    if (!existsSync(join(p.dir, 'onestep_sr_bg.wasm'))) throw new Error(`ONESTEP_WEB_ONLY=1 needs a built ${p.dir.slice(root.length + 1)}/: run \`npm --prefix web run build\` once`);
  }
  console.log('ONESTEP_WEB_ONLY=1: web/dist only, from the pkg/ already built');
} else {
  // 1. The crate for wasm32 (the target is added if this toolchain lacks it).
  if (!execFileSync('rustup', ['target', 'list', '--installed']).toString().includes('wasm32-unknown-unknown')) {
    run('rustup', ['target', 'add', 'wasm32-unknown-unknown']);
  }
  for (const f of existsSync(pkg) ? readdirSync(pkg) : []) if (f !== '.gitkeep') rmSync(join(pkg, f), { recursive: true });
  const bindgen = bindgenCli(bindgenVersion());
  for (const p of PACKAGES) {
    // Both builds share the target dir: burn's two feature sets are kept side by side.
    run('cargo', ['build', '--release', '--lib', '--target', 'wasm32-unknown-unknown', ...p.cargo], {
      env: { ...process.env, CARGO_TARGET_DIR: target },
    });
    const wasm = join(target, 'wasm32-unknown-unknown', 'release', 'onestep_sr.wasm');

    // 2. JS bindings + TypeScript types.
    mkdirSync(p.dir, { recursive: true });
    run(bindgen, ['--target', 'web', '--out-dir', p.dir, '--out-name', 'onestep_sr', wasm]);

    // 3. wasm-opt (the npm binaryen package: Debian's 108 breaks externref tables).
    // -O1: 4.41 MiB gzipped in 1.5 min here; -O2: 4.74 MiB in 3.5 min.
    if (level !== 'none') {
      const opt = join(web, 'node_modules', '.bin', 'wasm-opt');
      const file = join(p.dir, 'onestep_sr_bg.wasm');
      run(opt, [level, '--enable-bulk-memory', '--enable-nontrapping-float-to-int', '--enable-sign-ext',
        '--enable-reference-types', '--enable-multivalue', '--strip-debug', '--strip-producers', file, '-o', file]);
    }
  }
}

// Compressed copies made once here (`f.br`, `f.gz` beside `f`): the README's server sends
// one when the browser accepts it (`Content-Encoding`), as any static host can
// (docs/hosting.md). Weight shards are left alone: f16 / int8 bytes barely compress.
// A copy newer than its file is kept (ONESTEP_WEB_ONLY=1 keeps pkg/ and its copies).
const compressible = /\.(wasm|js|mjs|html|css|json|webmanifest|svg)$/;
function compressCopies(dir, skip = null) {
  for (const f of readdirSync(dir)) {
    const full = join(dir, f);
    if (full === skip) continue;
    if (statSync(full).isDirectory()) { compressCopies(full, skip); continue; }
    if (!compressible.test(f) || f === 'sizes.json') continue;
    const { size, mtimeMs } = statSync(full);
    const fresh = (ext) => existsSync(`${full}.${ext}`) && statSync(`${full}.${ext}`).mtimeMs >= mtimeMs;
    if (size < 1024 || (fresh('br') && fresh('gz'))) continue;
    const bytes = readFileSync(full);
    writeFileSync(`${full}.br`, brotliCompressSync(bytes, { params: {
      [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_LGWIN]: 24, [zlib.BROTLI_PARAM_SIZE_HINT]: size,
    } }));
    writeFileSync(`${full}.gz`, gzipSync(bytes, { level: 9 }));
  }
}
// pkg/ first: web/dist/pkg/ is a copy of it, compressed copies included.
compressCopies(pkg);

// 4. The front end: the page, the worker, the element bundle, the client, the static files,
// pkg/ (so that dist/ alone is a complete site), the model catalog, then the service worker
// with the list of files to precache and a version made from their bytes.
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
const common = {
  outdir: dist,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  // pkg/ is served beside the app and loaded at run time (the .wasm is fetched by URL).
  external: ['../pkg/*', '/pkg/*'],
  logLevel: 'warning',
};
await esbuild.build({
  ...common,
  entryPoints: {
    app: join(web, 'src', 'app.ts'),
    client: join(web, 'src', 'client.ts'),
    worker: join(web, 'src', 'worker.ts'),
    // Add a diffusion model: the official files converted in their own worker.
    'convert-worker': join(web, 'src', 'convert-worker.ts'),
    // <script type="module" src="onestep-upscaler.js">: the element and its client in one file.
    'onestep-upscaler': join(web, 'src', 'element.ts'),
  },
});
cpSync(join(web, 'public'), dist, { recursive: true });
cpSync(pkg, join(dist, 'pkg'), { recursive: true, preserveTimestamps: true, filter: (f) => !/(\.gitkeep|sizes\.json)$/.test(f) });

// The model catalog: every converted model in models/ (size, scale and architecture from its
// manifest) with its name, description and licence from assets/catalog.json; table
// entries on another origin (absolute URLs) as they are; the default model always.
const table = JSON.parse(readFileSync(join(root, 'assets', 'catalog.json'), 'utf8')).models;
const catalog = [];
const models = join(root, 'models');
for (const dir of existsSync(models) ? readdirSync(models).sort() : []) {
  const mf = join(models, dir, 'manifest.json');
  if (!existsSync(mf)) continue;
  const m = JSON.parse(readFileSync(mf, 'utf8'));
  const known = table.find((t) => t.id === m.model_id || t.manifest === `models/${dir}/manifest.json`) ?? {};
  catalog.push({
    ...known,
    id: known.id ?? m.model_id ?? dir,
    name: known.name ?? m.model_id ?? dir,
    description: known.description ?? '',
    architecture: m.architecture,
    scale: m.config?.scale ?? known.scale ?? 4,
    bytes: m.shards.reduce((n, s) => n + s.bytes, 0),
    licence: known.licence ?? '',
    manifest: `models/${dir}/manifest.json`,
  });
}
for (const t of table) {
  if (catalog.some((c) => c.id === t.id)) continue;
  if (t.default || /^https?:\/\//.test(t.manifest)) catalog.push(t);
}
catalog.sort((a, b) => Number(Boolean(b.default)) - Number(Boolean(a.default)));
writeFileSync(join(dist, 'models.json'), `${JSON.stringify({ models: catalog }, null, 2)}\n`);

// The service worker precaches the shell and every file of pkg/ but the WebGPU wasm, which
// it caches when first fetched (a browser without WebGPU never needs it); its cache's name
// is a hash of all those bytes, so a deployment that changes any of them is a new version.
const LAZY = ['pkg/onestep_sr_bg.wasm'];
const shellFiles = [];
const walk = (d, rel) => {
  for (const f of readdirSync(d).sort()) {
    const full = join(d, f);
    if (statSync(full).isDirectory()) walk(full, `${rel}${f}/`);
    else if (!/(\.map|\.d\.ts|package\.json|^sw\.js|\.br|\.gz)$/.test(f)) shellFiles.push(`${rel}${f}`);
  }
};
walk(dist, '');
const hash = createHash('sha256');
for (const f of shellFiles) hash.update(`${f}\0`).update(readFileSync(join(dist, f)));
const version = `onestep-sr-${hash.digest('hex').slice(0, 16)}`;
const shell = ['./', ...shellFiles.filter((f) => !LAZY.includes(f)).map((f) => `./${f}`)];
const lazy = LAZY.map((f) => `./${f}`);
await esbuild.build({
  ...common,
  entryPoints: { sw: join(web, 'src', 'sw.ts') },
  define: { __SHELL__: JSON.stringify(shell), __LAZY__: JSON.stringify(lazy), __VERSION__: JSON.stringify(version) },
});
console.log(`web/dist: ${shell.length} files precached, ${lazy.length} cached on first use, as ${version}; catalog: ${catalog.map((c) => c.id).join(', ')}`);
compressCopies(dist, join(dist, 'pkg'));

// 5. Sizes: raw, and the compressed copies the server sends.
const sizes = {};
for (const f of [out, join(pkg, 'onestep_sr.js'), join(pkg, 'cpu', 'onestep_sr_bg.wasm'), join(pkg, 'cpu', 'onestep_sr.js'), ...['app.js', 'worker.js', 'onestep-upscaler.js', 'sw.js'].map((f) => join(dist, f))]) {
  const raw = statSync(f).size;
  const copy = (ext) => (existsSync(`${f}.${ext}`) ? statSync(`${f}.${ext}`).size : raw);
  sizes[f.slice(root.length + 1)] = { raw, gzip: copy('gz'), brotli: copy('br') };
}
const size = (n) => (n > 1048576 ? mib(n) : kb(n));
for (const [f, s] of Object.entries(sizes)) console.log(`${f}: ${size(s.raw)} raw, ${size(s.gzip)} gzipped, ${size(s.brotli)} brotli`);
writeFileSync(join(pkg, 'sizes.json'), JSON.stringify(sizes, null, 2));
console.log(`wasm: ${kb(statSync(out).size)}, CPU-only ${kb(statSync(join(pkg, 'cpu', 'onestep_sr_bg.wasm')).size)} (${level})`);
