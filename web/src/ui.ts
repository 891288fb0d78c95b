// The upload page's shared DOM helpers: elements by id, the status line and progress bar,
// messages, the render-state pill, the buttons that follow the run, and the compare view.
import { COMPARE_CSS, CompareView } from './compare';
import { page } from './state';

export const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

/** The before / after view: made by mountCompare() before anything else uses it. */
export let compare: CompareView;

export function mountCompare() {
  const style = document.createElement('style');
  style.textContent = COMPARE_CSS;
  document.head.append(style);
  compare = new CompareView(document, { emptyText: 'Choose, drop or paste an image: it appears here, and the result beside it.' });
  $('compare').append(compare.el);
}

export function status(text: string, fraction?: number) {
  $('status').textContent = text;
  const bar = $<HTMLProgressElement>('bar');
  bar.hidden = fraction === undefined;
  if (fraction !== undefined) bar.value = fraction;
}

/** A message as a sentence: capitalised, with a full stop. */
export function sentence(text: string) {
  const t = text.trim();
  if (!t) return '';
  return `${t[0].toUpperCase()}${t.slice(1)}${/[.!?…)]$/.test(t) ? '' : '.'}`;
}

export function message(text: string, error = false) {
  const m = $('message');
  m.textContent = sentence(text);
  m.classList.toggle('error', error);
}

export function setRenderState(state: '' | 'preview' | 'exact', text = '') {
  const r = $('render-state');
  r.dataset.state = state;
  r.textContent = text;
  r.hidden = !state;
}

export function syncButtons() {
  const running = page.controller !== null;
  const go = $<HTMLButtonElement>('go');
  go.disabled = running || page.items.length === 0 || page.catalog.length === 0;
  $('cancel').hidden = !running;
  $<HTMLSelectElement>('model').disabled = running;
}

/**
 * Brings the result and its Download into view when a run the person started has finished
 * (on a phone they are below the controls). Smooth unless reduced motion is asked for; focus
 * stays where it is, and no scroll while a field or list has it (the person is busy there).
 */
export function revealResult() {
  const active = document.activeElement;
  if ((active instanceof HTMLInputElement && active.type !== 'file') || active instanceof HTMLSelectElement || active instanceof HTMLTextAreaElement) return;
  // The bar with Download, at the bottom of the view: the compare view is above it.
  const bar = document.querySelector('.result-bar');
  const r = bar?.getBoundingClientRect();
  if (!bar || !r || (r.top >= 0 && r.bottom <= innerHeight)) return;
  const smooth = !matchMedia('(prefers-reduced-motion: reduce)').matches;
  bar.scrollIntoView({ block: 'end', behavior: smooth ? 'smooth' : 'auto' });
}
