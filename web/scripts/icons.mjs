// Draws the app icons (web/public/icon-192.png, icon-512.png) from the same design as
// icon.svg, as maskable icons: a full-bleed background and the mark inside the central safe
// zone (a circle of 40% of the size in radius). Committed output; rerun after a design change:
//   node web/scripts/icons.mjs
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';

const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'public');
const BG = [0x1d, 0x35, 0x57], SQUARE = [0xa8, 0xda, 0xdc], ARROW = [0xf1, 0xfa, 0xee];

/// Coverage of the design at (x, y) in a 64-unit square: which colour, or the background.
function colourAt(x, y) {
  // The mark of icon.svg (square 10..30 x 34..54, arrow from (30,34) to (54,10) with a corner
  // at (54,10)), scaled by 0.62 about the centre so it sits inside the maskable safe zone.
  const s = 0.62, c = 32;
  const u = (x - c) / s + c, v = (y - c) / s + c;
  const seg = (ax, ay, bx, by, w) => {
    const dx = bx - ax, dy = by - ay;
    const t = Math.max(0, Math.min(1, ((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy)));
    return Math.hypot(u - ax - t * dx, v - ay - t * dy) <= w / 2;
  };
  if (seg(34, 10, 54, 10, 5) || seg(54, 10, 54, 30, 5) || seg(54, 10, 30, 34, 5)) return ARROW;
  if (u >= 10 && u <= 30 && v >= 34 && v <= 54) return SQUARE;
  return BG;
}

function crc32(buf) {
  let c, crc = 0xffffffff;
  for (const b of buf) {
    c = (crc ^ b) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

function png(size) {
  const ss = 4; // 4x4 supersampling
  const rows = [];
  for (let y = 0; y < size; y++) {
    const row = Buffer.alloc(1 + size * 3);
    for (let x = 0; x < size; x++) {
      const acc = [0, 0, 0];
      for (let j = 0; j < ss; j++) for (let i = 0; i < ss; i++) {
        const col = colourAt(((x + (i + 0.5) / ss) / size) * 64, ((y + (j + 0.5) / ss) / size) * 64);
        for (let k = 0; k < 3; k++) acc[k] += col[k];
      }
      for (let k = 0; k < 3; k++) row[1 + x * 3 + k] = Math.round(acc[k] / (ss * ss));
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0); ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.concat(rows), { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}

for (const size of [192, 512]) {
  const bytes = png(size);
  writeFileSync(join(out, `icon-${size}.png`), bytes);
  console.log(`icon-${size}.png: ${bytes.length} bytes`);
}
