// The upload page's model picker: the catalog read into the <select> (grouped by kind), each
// model's size or cached state and licence shown before anything is fetched, and the output
// scales the chosen model allows.
import { type CatalogEntry, cacheState, defaultEntry, fallbackCatalog, formatBytes, groupedCatalog, loadCatalog } from './catalog';
import { page } from './state';
import { $, message, syncButtons } from './ui';

const SCALES = [4, 3, 2, 1.5, 1];

function catalogUrl() {
  return new URLSearchParams(location.search).get('catalog') ?? 'models.json';
}

export function entry(): CatalogEntry {
  const id = $<HTMLSelectElement>('model').value;
  return page.catalog.find((m) => m.id === id) ?? defaultEntry(page.catalog);
}

export async function readCatalog() {
  try {
    page.catalog = await loadCatalog(catalogUrl());
  } catch (e) {
    page.catalog = fallbackCatalog(location.href);
    message(`${(e as Error).message}; offering the default model only.`, true);
  }
  const want = new URLSearchParams(location.search).get('model') ?? localStorage.getItem('onestep-model');
  renderSelect(want);
}

/** Models made on this device (addDiffusionModel) as catalog entries: "PiSA-SR" / "OSEDiff". */
export function withLocalModels() {
  const local = page.cached.filter((c) => c.url.startsWith('onestep-local:') && c.complete);
  const before = page.catalog.map((m) => m.id).join();
  page.catalog = page.catalog.filter((m) => !m.manifest.startsWith('onestep-local:') || local.some((c) => c.url === m.manifest));
  for (const c of local) {
    if (page.catalog.some((m) => m.manifest === c.url)) continue;
    const pisa = c.architecture === 'pisa-sr';
    page.catalog.push({
      id: `local-${c.url.split('/').pop()}`, name: pisa ? 'PiSA-SR' : 'OSEDiff', description: 'from your files',
      architecture: c.architecture, scale: 4, bytes: c.totalBytes, manifest: c.url,
      licence: `your copy of Stable Diffusion 2.1 (CreativeML Open RAIL++-M) and ${pisa ? 'PiSA-SR' : 'OSEDiff'} (Apache-2.0)`,
    });
  }
  if (page.catalog.map((m) => m.id).join() !== before) renderSelect($<HTMLSelectElement>('model').value);
}

/** Choose the model whose manifest is `url` (a model just added). */
export function selectModel(url: string) {
  const m = page.catalog.find((c) => c.manifest === url);
  if (!m) return;
  $<HTMLSelectElement>('model').value = m.id;
  page.adjustable = null;
  modelChanged();
}

function renderSelect(want: string | null) {
  const catalog = page.catalog;
  const sel = $<HTMLSelectElement>('model');
  // Grouped (photos, anime and drawings, diffusion) when the catalog has more than one kind.
  const groups = groupedCatalog(catalog);
  sel.replaceChildren(...(groups.length > 1
    ? groups.map(({ group, models }) => {
      const g = document.createElement('optgroup');
      g.label = group;
      g.append(...models.map((m) => new Option(m.name, m.id)));
      return g;
    })
    : catalog.map((m) => new Option(m.name, m.id))));
  sel.value = catalog.some((m) => m.id === want) ? want! : defaultEntry(catalog).id;
  modelChanged();
}

export function renderModelInfo() {
  const sel = $<HTMLSelectElement>('model');
  for (const o of sel.options) {
    const m = page.catalog.find((c) => c.id === o.value);
    if (m) o.textContent = `${m.name} — ${m.description ? `${m.description}, ` : ''}${cacheState(m, page.cached).state === 'cached' ? 'on this device' : formatBytes(m.bytes)}`;
  }
  const m = entry();
  if (!m) return;
  const c = cacheState(m, page.cached);
  $('model-info').textContent = `${m.description ? `${m.description}. ` : ''}${c.text[0].toUpperCase()}${c.text.slice(1)}.${m.licence ? ` Licence: ${m.licence}.` : ''}`;
  $('model-info').dataset.cache = c.state;
}

function modelChanged() {
  const m = entry();
  localStorage.setItem('onestep-model', m.id);
  // Output scales: the model's own (the default) and the smaller ones; never above it (the
  // engine refuses those). A smaller one chosen before stays when the new model allows it.
  const scale = $<HTMLSelectElement>('scale');
  const prev = scale.value;
  scale.replaceChildren(new Option(`x${m.scale} (the model's)`, ''),
    ...SCALES.filter((s) => s < m.scale).map((s) => new Option(`x${s} (downscaled)`, String(s))));
  if ([...scale.options].some((o) => o.value === prev)) scale.value = prev;
  $('pisa').hidden = m.architecture !== 'pisa-sr';
  renderModelInfo();
  syncButtons();
}

export function wirePicker() {
  $('model').addEventListener('change', () => { page.adjustable = null; modelChanged(); });
}
