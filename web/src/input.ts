// The upload page's input: images chosen, dropped, pasted, or shared into the installed app
// (the share target), all handed to the queue.
import { addFiles } from './queue';
import { $, message } from './ui';

export function wireInput() {
  const input = $<HTMLInputElement>('file');
  input.addEventListener('change', () => {
    addFiles([...(input.files ?? [])]);
    input.value = '';
  });
  const drop = $('drop');
  document.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  document.addEventListener('dragleave', (e) => { if (!e.relatedTarget) drop.classList.remove('over'); });
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    addFiles([...(e.dataTransfer?.files ?? [])]);
  });
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith('image/'));
    if (!files.length) return;
    e.preventDefault();
    addFiles(files.map((f, i) => (f.name && f.name !== 'image.png' ? f : new File([f], `pasted-${Date.now().toString(36)}${i ? `-${i}` : ''}.${(f.type.split('/')[1] || 'png').replace('jpeg', 'jpg')}`, { type: f.type }))));
  });
}

/** Files shared into the installed app: the service worker keeps them in a cache for us. */
export async function takeShared() {
  const params = new URLSearchParams(location.search);
  if (!params.has('shared') || !('caches' in self)) return;
  history.replaceState(null, '', location.pathname);
  const cache = await caches.open('onestep-share');
  const files: File[] = [];
  for (const req of await cache.keys()) {
    const res = await cache.match(req);
    if (res) {
      const blob = await res.blob();
      files.push(new File([blob], decodeURIComponent(res.headers.get('x-file-name') ?? 'shared.png'), { type: blob.type }));
    }
    await cache.delete(req);
  }
  if (files.length) await addFiles(files);
  else message('Nothing was shared, or the shared file could not be kept.', true);
}
