// The upload page's shared state: the queue's items, the catalog and the cached models, the
// run in progress and the PiSA-SR result the sliders can adjust. No DOM here: every feature
// module reads and writes it, and it imports none of them.
import type { CachedModel, CatalogEntry } from './catalog';
import { Session } from './session';

export type State = 'waiting' | 'running' | 'done' | 'failed' | 'cancelled';
export interface Item {
  id: number;
  file: File;
  state: State;
  note: string;
  result: Blob | null;
  outName: string;
  /** Input size when the browser could decode it (for the preview's region mapping). */
  size: { width: number; height: number } | null;
  /** The model output's size before any scale / width, and the size shown. */
  modelScale: number;
  url: string;
}

export const session = new Session();

export const page = {
  catalog: [] as CatalogEntry[],
  cached: [] as CachedModel[],
  items: [] as Item[],
  selected: null as Item | null,
  controller: null as AbortController | null,
  /** PiSA-SR's kept predictions live in the worker for the last adjustable run only. */
  adjustable: null as { item: Item; entry: CatalogEntry } | null,
};
