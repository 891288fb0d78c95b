// A static server for the app and the weights, on 127.0.0.1 only: / is web/dist, /pkg/ the
// wasm package, /models/ the converted models (the default weight origin), /fixtures/ the
// test images. Tests use its hooks: per-path request counts and injected faults.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve } from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.map': 'application/json', '.json': 'application/json', '.webmanifest': 'application/manifest+json',
  '.wasm': 'application/wasm', '.png': 'image/png', '.jpg': 'image/jpeg', '.svg': 'image/svg+xml',
  '.css': 'text/css', '.bin': 'application/octet-stream', '.ts': 'text/plain', '.onnx': 'application/octet-stream',
};

/// Faults a test can inject on a path (each applies to the next `times` requests):
/// 'status404' | 'html' | 'truncate' | 'corrupt' | 'drop' (the connection closes mid-body).
export function startServer({ root, port = 0, extra = {} }) {
  const counts = new Map();
  const faults = new Map();
  const table = {
    ...extra,
    '/pkg/': join(root, 'pkg'),
    '/models/': join(root, 'models'),
    '/fixtures/': join(root, 'tests', 'fixtures'),
    '/test/': join(root, 'web', 'test'),
    '/': join(root, 'web', 'dist'),
  };
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const prefix = Object.keys(table).find((p) => path.startsWith(p));
    const base = resolve(table[prefix]);
    let file = normalize(join(base, path.slice(prefix.length)));
    if (!file.startsWith(base)) { res.writeHead(403).end(); return; }
    if (existsSync(file) && statSync(file).isDirectory()) file = join(file, 'index.html');
    const f = faults.get(path);
    const fault = f && f.times > 0 ? (f.times -= 1, f.kind) : null;
    if (fault === 'status404') { res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'); return; }
    if (fault === 'html') {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>app</title><p>index page');
      return;
    }
    if (!existsSync(file) || !file.startsWith(base)) { res.writeHead(404).end('not found'); return; }
    const stat = statSync(file);
    const size = stat.size;
    const headers = {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'cache-control': 'no-cache',
    };
    if (fault === 'truncate') {
      // A consistent but short response: the length check must catch it.
      res.writeHead(200, { ...headers, 'content-length': Math.floor(size / 2) });
      createReadStream(file, { end: Math.floor(size / 2) - 1 }).pipe(res);
      return;
    }
    if (fault === 'drop') {
      // Promise the whole body, send a third, then cut the connection.
      res.writeHead(200, { ...headers, 'content-length': size });
      const s = createReadStream(file, { end: Math.floor(size / 3) });
      s.on('data', (c) => res.write(c));
      s.on('end', () => setTimeout(() => req.socket.destroy(), 50));
      return;
    }
    if (fault === 'corrupt') {
      // Right length, one flipped byte: only the SHA-256 can tell.
      res.writeHead(200, { ...headers, 'content-length': size });
      let first = true;
      createReadStream(file).on('data', (c) => {
        if (first) { c = Buffer.from(c); c[0] ^= 0xff; first = false; }
        res.write(c);
      }).on('end', () => res.end());
      return;
    }
    // The build's precompressed copy when the browser takes it (never for a shard: none is
    // made), and only while it is not older than the file (a file edited since is sent as is).
    const accepts = String(req.headers['accept-encoding'] ?? '');
    const enc = [['br', 'br'], ['gzip', 'gz']].find(([name, ext]) => accepts.includes(name)
      && existsSync(`${file}.${ext}`) && statSync(`${file}.${ext}`).mtimeMs >= stat.mtimeMs);
    if (enc) {
      const packed = `${file}.${enc[1]}`;
      res.writeHead(200, { ...headers, 'content-encoding': enc[0], vary: 'accept-encoding', 'content-length': statSync(packed).size });
      createReadStream(packed).pipe(res);
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': size });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(port, '127.0.0.1', () => ok({
    server,
    url: `http://127.0.0.1:${server.address().port}`,
    counts,
    /// Requests for paths starting with `prefix` (e.g. shard files).
    requests: (prefix) => [...counts].filter(([p]) => p.startsWith(prefix)).reduce((n, [, c]) => n + c, 0),
    inject: (path, kind, times = Infinity) => faults.set(path, { kind, times }),
    clear: () => { faults.clear(); counts.clear(); },
    close: () => new Promise((done) => { server.closeAllConnections?.(); server.close(done); }),
  })));
}
