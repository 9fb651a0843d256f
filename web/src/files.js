// The launcher's file browser: a directory of root_dir, and what the contents API can do with it:
// new folder, notebook and file, upload (a button, or files dropped on the list; large files in
// chunks), rename, copy, download and delete (after a confirmation). Every action is a labelled
// button, so it is reachable by keyboard and named for screen readers.
import { el, button, relativeTime, encodePath } from './dom.js';
import { notebookUrl } from './notebook.js';

const CHUNK = 1024 * 1024;  // uploads past 1 MiB go in pieces of this size (Jupyter Server's chunk field)

const ICONS = {
  directory: 'M1 3h5l1.5 1.5H15V13H1z',
  notebook: 'M3 1h9l2 2v12H3zM5 4h6v1H5zm0 3h6v1H5zm0 3h4v1H5z',
  file: 'M3 1h7l3 3v11H3zM10 1v3h3',
};

function icon(type) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('class', `icon icon-${type}`);
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', ICONS[type] || ICONS.file);
  svg.append(path);
  return svg;
}

function base64(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function join(dir, name) { return dir ? `${dir}/${name}` : name; }

export class FileBrowser {
  constructor(server, { onError, onNotebook }) {
    this.server = server;
    this.onError = onError;
    this.onNotebook = onNotebook;  // (dir): a new notebook there, with the default kernel
    this.dir = this.dirFromHash();
    this.status = el('p', { class: 'file-status', role: 'status', 'aria-live': 'polite' });
    this.picker = el('input', { type: 'file', multiple: true, hidden: true, 'aria-label': 'Files to upload',
      onchange: () => { this.upload([...this.picker.files]); this.picker.value = ''; } });
    this.list = el('div', { class: 'file-list' });
    this.node = el('div', { class: 'files',
      ondragover: event => { event.preventDefault(); this.node.classList.add('dropping'); },
      ondragleave: () => this.node.classList.remove('dropping'),
      ondrop: event => {
        event.preventDefault();
        this.node.classList.remove('dropping');
        this.upload([...(event.dataTransfer?.files || [])]);
      } },
    el('div', { class: 'file-actions', role: 'toolbar', 'aria-label': 'File actions' },
      button('New folder', () => this.create('directory')),
      button('New notebook', () => this.onNotebook(this.dir)),
      button('New file', () => this.create('file')),
      button('Upload files', () => this.picker.click(), { icon: 'Upload…' }),
      this.picker),
    this.list, this.status);
    window.addEventListener('hashchange', () => { this.dir = this.dirFromHash(); this.refresh(); });
  }

  dirFromHash() { return decodeURIComponent((location.hash.match(/^#dir=(.*)$/) || [])[1] || ''); }

  // Runs an action, says what it did, and shows the directory as it now is.
  async act(what, done) {
    try {
      await what();
      if (done) this.status.textContent = done;
    } catch (error) {
      this.onError(error);
    }
    await this.refresh();
  }

  create(type) {
    return this.act(async () => {
      const model = await this.server.contents.newUntitled({ path: this.dir, type });
      this.status.textContent = `Created ${model.name}.`;
    });
  }

  upload(files) {
    if (!files.length) return;
    return this.act(async () => {
      for (const file of files) await this.uploadOne(file);
    }, `Uploaded ${files.map(f => f.name).join(', ')}.`);
  }

  async uploadOne(file) {
    const path = join(this.dir, file.name);
    const pieces = Math.max(1, Math.ceil(file.size / CHUNK));
    for (let i = 0; i < pieces; i++) {
      const bytes = new Uint8Array(await file.slice(i * CHUNK, (i + 1) * CHUNK).arrayBuffer());
      const model = { type: 'file', format: 'base64', content: base64(bytes) };
      if (pieces > 1) model.chunk = i === pieces - 1 ? -1 : i + 1;
      this.status.textContent = pieces > 1 ? `Uploading ${file.name}: ${Math.round(100 * i / pieces)}%` : `Uploading ${file.name}…`;
      await this.server.contents.save(path, model);
    }
  }

  rename(item) {
    const name = window.prompt(`Rename ${item.name} to:`, item.name);
    if (!name || name === item.name) return;
    if (name.includes('/')) { this.onError(new Error('A name cannot contain /.')); return; }
    return this.act(() => this.server.contents.rename(item.path, join(this.dir, name)), `Renamed ${item.name} to ${name}.`);
  }

  copy(item) {
    return this.act(async () => {
      const model = await this.server.contents.copy(item.path, this.dir);
      this.status.textContent = `Copied ${item.name} to ${model.name}.`;
    });
  }

  remove(item) {
    if (!window.confirm(`Delete ${item.type === 'directory' ? 'the folder ' : ''}${item.name}? This cannot be undone.`)) return;
    return this.act(() => this.server.contents.delete(item.path), `Deleted ${item.name}.`);
  }

  async refresh() {
    let listing;
    try {
      listing = await this.server.contents.get(this.dir, { content: true });
    } catch (error) { this.onError(error); return; }
    const items = listing.content
      .sort((a, b) => (a.type === 'directory' ? 0 : 1) - (b.type === 'directory' ? 0 : 1) || a.name.localeCompare(b.name));
    const key = JSON.stringify([this.dir, items.map(i => [i.name, i.type, i.last_modified])]);
    if (this.list.dataset.key === key) return;
    this.list.dataset.key = key;
    const focused = this.list.contains(document.activeElement) ? document.activeElement.getAttribute('aria-label') : null;
    const crumbs = [el('a', { href: '#dir=' }, 'root')];
    let prefix = '';
    for (const part of this.dir.split('/').filter(Boolean)) {
      prefix = join(prefix, part);
      crumbs.push(' / ', el('a', { href: '#dir=' + encodeURIComponent(prefix) }, part));
    }
    this.list.replaceChildren(el('nav', { class: 'crumbs', 'aria-label': 'Directory' }, ...crumbs),
      items.length ? el('ul', {}, ...items.map(item => this.row(item))) : el('p', { class: 'empty' }, 'This directory is empty.'));
    if (focused) [...this.list.querySelectorAll('[aria-label]')].find(e => e.getAttribute('aria-label') === focused)?.focus();
  }

  row(item) {
    const server = this.server;
    const href = item.type === 'directory' ? '#dir=' + encodeURIComponent(item.path)
      : item.type === 'notebook' ? notebookUrl(server, item.path) : server.url('files/' + encodePath(item.path));
    const file = item.type !== 'directory';
    return el('li', { class: item.type, dataset: { path: item.path } },
      el('a', { href, class: 'name', target: item.type === 'file' ? '_blank' : undefined, rel: item.type === 'file' ? 'noopener' : undefined },
        icon(item.type), item.name),
      el('time', { datetime: item.last_modified }, relativeTime(item.last_modified)),
      el('span', { class: 'row-actions' },
        button(`Rename ${item.name}`, () => this.rename(item), { icon: 'Rename' }),
        file ? button(`Copy ${item.name}`, () => this.copy(item), { icon: 'Copy' }) : null,
        file ? el('a', { href: server.url('files/' + encodePath(item.path)) + '?download=1', download: item.name,
          'aria-label': `Download ${item.name}`, class: 'button' }, 'Download') : null,
        button(`Delete ${item.name}`, () => this.remove(item), { icon: 'Delete' })));
  }
}
