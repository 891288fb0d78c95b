// `npm --prefix web run build`: the wasm package in pkg/ (cargo for wasm32, wasm-bindgen
// pinned to the crate's version, wasm-opt from the npm `binaryen` package), then the front
// end in web/dist/; prints the sizes (raw and gzipped).
//
// Env: ONESTEP_WASM_OPT (default -O1; "none" skips wasm-opt), ONESTEP_CACHE, CARGO_TARGET_DIR.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
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

// 1. The crate for wasm32 (the target is added if this toolchain lacks it).
if (!execFileSync('rustup', ['target', 'list', '--installed']).toString().includes('wasm32-unknown-unknown')) {
  run('rustup', ['target', 'add', 'wasm32-unknown-unknown']);
}
run('cargo', ['build', '--release', '--lib', '--target', 'wasm32-unknown-unknown'], {
  env: { ...process.env, CARGO_TARGET_DIR: target },
});
const wasm = join(target, 'wasm32-unknown-unknown', 'release', 'onestep_sr.wasm');

// 2. JS bindings + TypeScript types into pkg/.
for (const f of existsSync(pkg) ? readdirSync(pkg) : []) if (f !== '.gitkeep') rmSync(join(pkg, f), { recursive: true });
mkdirSync(pkg, { recursive: true });
run(bindgenCli(bindgenVersion()), ['--target', 'web', '--out-dir', pkg, '--out-name', 'onestep_sr', wasm]);

// 3. wasm-opt (the npm binaryen package: Debian's 108 breaks externref tables).
const out = join(pkg, 'onestep_sr_bg.wasm');
// -O1: 4.41 MiB gzipped in 1.5 min here; -O2: 4.74 MiB in 3.5 min.
const level = process.env.ONESTEP_WASM_OPT ?? '-O1';
if (level !== 'none') {
  const opt = join(web, 'node_modules', '.bin', 'wasm-opt');
  run(opt, [level, '--enable-bulk-memory', '--enable-nontrapping-float-to-int', '--enable-sign-ext',
    '--enable-reference-types', '--enable-multivalue', '--strip-debug', '--strip-producers', out, '-o', out]);
}

// 4. The front end: the worker, the element, the page, the service worker.
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
// The service worker precaches the shell and every file of pkg/ (its snippets included).
const pkgFiles = [];
const walk = (d, rel) => {
  for (const f of readdirSync(d)) {
    const full = join(d, f);
    if (statSync(full).isDirectory()) walk(full, `${rel}${f}/`);
    else if (!/(\.d\.ts|\.gitkeep|sizes\.json|package\.json)$/.test(f)) pkgFiles.push(`./pkg/${rel}${f}`);
  }
};
walk(pkg, '');
const shell = ['./', './index.html', './app.js', './worker.js', './manifest.webmanifest', './icon.svg', ...pkgFiles];
await esbuild.build({
  entryPoints: { app: join(web, 'src', 'app.ts'), worker: join(web, 'src', 'worker.ts'), sw: join(web, 'src', 'sw.ts') },
  define: { __SHELL__: JSON.stringify(shell), __VERSION__: JSON.stringify(`onestep-sr-${Date.now().toString(36)}`) },
  outdir: dist,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  // pkg/ is served beside the app and loaded at run time (the .wasm is fetched by URL).
  external: ['../pkg/*', '/pkg/*'],
  logLevel: 'warning',
});
for (const f of readdirSync(join(web, 'public'))) copyFileSync(join(web, 'public', f), join(dist, f));

// 5. Sizes.
const sizes = {};
for (const f of [out, join(pkg, 'onestep_sr.js'), join(dist, 'app.js'), join(dist, 'worker.js')]) {
  const bytes = readFileSync(f);
  sizes[f.slice(root.length + 1)] = { raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
}
for (const [f, s] of Object.entries(sizes)) console.log(`${f}: ${mib(s.raw)} raw, ${mib(s.gzip)} gzipped`);
writeFileSync(join(pkg, 'sizes.json'), JSON.stringify(sizes, null, 2));
console.log(`wasm: ${kb(statSync(out).size)} (${level})`);
