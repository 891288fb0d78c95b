// The model catalog (models.json, written by the build from models/*/manifest.json and
// assets/catalog.json; a deployment may edit it or serve its own): what the page and
// the element offer, with sizes and licences, before anything is downloaded.

import { isDiffusion } from './client';

export interface CatalogEntry {
  /** Short name used by `<onestep-upscaler model="…">` and the page's picker. */
  id: string;
  name: string;
  /** One line for a person: "photos", "anime", "diffusion: most detail, slow". */
  description: string;
  /** 'rrdbnet' | 'srvgg' | 'osediff' | 'pisa-sr' (the manifest's architecture). */
  architecture: string;
  /** The model's own scale: 4, or 2 / 3 (realesr-animevideov3-x2 / -x3). Output scales
   *  above it are not offered (the engine refuses them). */
  scale: number;
  /** The picker's group ("Photos", "Anime and drawings", "Diffusion: most detail, slow");
   *  when absent, guessed from the architecture and the name (`modelGroup`). */
  group?: string;
  /** Download size in bytes (the shards), or 0 when unknown. */
  bytes: number;
  licence: string;
  /** The manifest's URL, absolute once the catalog is loaded (relative to the catalog's URL). */
  manifest: string;
  /** The catalog's default model (the first entry when none says so). */
  default?: boolean;
  /** Options passed to every upscale with this model (e.g. { "processSize": 256 }). */
  options?: Record<string, unknown>;
}

export interface CachedModel {
  url: string; modelId: string; architecture: string; bytes: number; totalBytes: number;
  shards: number; totalShards: number; complete: boolean;
}

/** The built-in entry, used when the catalog cannot be read (a bare deployment). */
export function fallbackCatalog(base: string): CatalogEntry[] {
  return [{
    id: 'realesrgan-x4plus', name: 'Real-ESRGAN x4plus', description: 'Photos: fast, sharp, works everywhere',
    architecture: 'rrdbnet', scale: 4, bytes: 33423116, licence: 'BSD-3-Clause (xinntao/Real-ESRGAN)',
    manifest: new URL('models/realesrgan-x4plus/manifest.json', base).href, default: true,
  }];
}

/** Reads a catalog; manifest URLs become absolute. Throws a clear Error when it is unusable. */
export async function loadCatalog(url: string): Promise<CatalogEntry[]> {
  const abs = new URL(url, location.href).href;
  let res: Response;
  try {
    res = await fetch(abs, { cache: 'no-cache' });
  } catch (e) {
    throw new Error(`cannot fetch the model catalog ${abs}: ${(e as Error).message}`);
  }
  if (!res.ok) throw new Error(`cannot fetch the model catalog ${abs}: HTTP ${res.status}`);
  let json: unknown;
  try { json = await res.json(); } catch { throw new Error(`the model catalog ${abs} is not JSON`); }
  const list = Array.isArray(json) ? json : (json as { models?: unknown })?.models;
  if (!Array.isArray(list) || list.length === 0) throw new Error(`the model catalog ${abs} lists no models`);
  const out: CatalogEntry[] = [];
  for (const m of list as Partial<CatalogEntry>[]) {
    if (!m || typeof m.id !== 'string' || typeof m.manifest !== 'string') continue;
    out.push({
      id: m.id,
      name: m.name ?? m.id,
      description: m.description ?? '',
      architecture: m.architecture ?? 'rrdbnet',
      scale: Number(m.scale) || 4,
      bytes: Number(m.bytes) || 0,
      licence: m.licence ?? '',
      manifest: new URL(m.manifest, abs).href,
      default: Boolean(m.default),
      ...(typeof m.group === 'string' && m.group ? { group: m.group } : {}),
      options: m.options && typeof m.options === 'object' ? m.options : undefined,
    });
  }
  if (!out.length) throw new Error(`the model catalog ${abs} lists no usable models (each needs an id and a manifest)`);
  return out;
}

export function defaultEntry(catalog: CatalogEntry[]): CatalogEntry {
  return catalog.find((m) => m.default) ?? catalog[0];
}

/** A catalog id or a manifest URL → an entry. One not in the catalog gets a plain one: a
 *  bare id (`realesr-animevideov3-x2`) means `models/<id>/manifest.json` beside the catalog
 *  (`base`), anything else is a manifest URL. Its scale is unknown until the model loads: a
 *  run uses the loaded model's (`up.info.scale`). */
export function resolveModel(model: string, catalog: CatalogEntry[], base = location.href): CatalogEntry {
  const byId = catalog.find((m) => m.id === model);
  if (byId) return byId;
  if (/^[A-Za-z0-9][\w.-]*$/.test(model) && !/\.json$/i.test(model)) {
    return { id: model, name: model, description: '', architecture: 'unknown', scale: 4, bytes: 0, licence: '', manifest: new URL(`models/${model}/manifest.json`, new URL(base, location.href)).href };
  }
  const url = new URL(model, location.href).href;
  const byUrl = catalog.find((m) => m.manifest === url);
  if (byUrl) return byUrl;
  const dir = url.replace(/\/manifest\.json(\?.*)?$/, '').split('/').pop() || url;
  return { id: dir, name: dir, description: '', architecture: 'unknown', scale: 4, bytes: 0, licence: '', manifest: url };
}

/** The scale a run gives: the one asked for when it is below the model's own (the engine
 *  refuses one above it), else the model's. `null` when the model's own scale applies. */
export function effectiveScale(asked: number | null | undefined, modelScale: number): number | null {
  return asked && asked > 0 && asked < modelScale ? asked : null;
}

/** The picker's group for an entry: its own `group`, else diffusion models, anime and
 *  drawings models (by name), and photos. */
export function modelGroup(m: CatalogEntry): string {
  if (m.group) return m.group;
  if (isDiffusion(m.architecture)) return 'Diffusion: most detail, slow';
  if (/anime|drawing|illustration/i.test(`${m.id} ${m.name} ${m.description}`)) return 'Anime and drawings';
  return 'Photos';
}

/** The catalog in groups (in order of first appearance, photos first), each group's models
 *  best first: the larger (slower, more detailed) before the small fast ones, then by scale. */
export function groupedCatalog(catalog: CatalogEntry[]): { group: string; models: CatalogEntry[] }[] {
  const order = ['Photos', 'Anime and drawings', 'Diffusion: most detail, slow'];
  const groups = new Map<string, CatalogEntry[]>();
  for (const m of catalog) {
    const g = modelGroup(m);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push(m);
  }
  const rank = (g: string) => (order.includes(g) ? order.indexOf(g) : order.length);
  return [...groups.entries()]
    .sort((a, b) => rank(a[0]) - rank(b[0]))
    .map(([group, models]) => ({ group, models: [...models].sort((a, b) => (b.bytes - a.bytes) || (b.scale - a.scale)) }));
}

/** "33.4 MB" (decimal, as download sizes are usually given). */
export function formatBytes(n: number): string {
  if (!n) return 'size unknown';
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
  return `${n} B`;
}

/** "cached", "partly cached (12 of 33 MB)" or "not downloaded yet (33.4 MB)". */
export function cacheState(entry: CatalogEntry, cached: CachedModel[]): { state: 'cached' | 'partial' | 'none'; text: string } {
  const c = cached.find((x) => x.url === entry.manifest);
  if (c?.complete) return { state: 'cached', text: `on this device (${formatBytes(c.bytes)})` };
  if (c && c.bytes > 0) return { state: 'partial', text: `partly downloaded (${formatBytes(c.bytes)} of ${formatBytes(c.totalBytes || entry.bytes)})` };
  return { state: 'none', text: `download ${formatBytes(entry.bytes)}` };
}

/** `photo.jpg` → `photo_x4.png`; with a target width, `photo_1920w.png`. */
export function outputName(input: string, opts: { scale: number; width?: number }): string {
  const stem = (input.replace(/\.[^./\\]*$/, '') || 'image').replace(/[\\/:*?"<>|]+/g, '_');
  if (opts.width) return `${stem}_${opts.width}w.png`;
  return `${stem}_x${+opts.scale.toFixed(3)}.png`;
}
