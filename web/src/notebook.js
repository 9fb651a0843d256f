// The notebook page: the toolbar and the list of cells, and editing them (insert, remove, move,
// change kind). The kernel's session and its messages are KernelLink's (kernel-link.js), saving is
// Saver's (saver.js), one cell is Cell's (cell.js).
import { el, button, encodePath } from './dom.js';
import { Cell } from './cell.js';
import { KernelLink } from './kernel-link.js';
import { Saver } from './saver.js';
import { widgetContext } from './rich.js';

class Notebook {
  constructor(root, server, path, model) {
    this.root = root;
    this.server = server;
    this.path = path;
    const content = model.content;
    this.metadata = content.metadata || {};
    widgetContext.saved = (this.metadata.widgets || {})['application/vnd.jupyter.widget-state+json'] || null;
    this.minor = Math.max(5, content.nbformat_minor || 0);
    this.language = (this.metadata.language_info || {}).name || (this.metadata.kernelspec || {}).language || 'python';
    this.cells = [];
    this.active = null;
    this.clipboard = null;  // a cell copied or cut in command mode (C, X), pasted by V and Shift+V
    this.deleted = [];  // [index, cell JSON] of deleted cells, newest last, for Z
    this.link = new KernelLink(this);
    this.saver = new Saver(this, model.last_modified);

    this.status = el('span', { class: 'kernel-status', role: 'status', 'aria-live': 'polite' }, 'Starting kernel…');
    this.saveState = el('span', { class: 'save-state', role: 'status', 'aria-live': 'polite' }, 'Saved');
    this.banner = el('div', { class: 'banner', role: 'alert', hidden: true });
    this.cellList = el('div', { class: 'cells' });
    this.kindSelect = el('select', { 'aria-label': 'Cell type', onchange: () => this.changeKind(this.kindSelect.value) },
      el('option', { value: 'code' }, 'Code'), el('option', { value: 'markdown' }, 'Markdown'), el('option', { value: 'raw' }, 'Raw'));
    this.kernelSelect = el('select', { 'aria-label': 'Kernel', onchange: () => this.link.changeKernel(this.kernelSelect.value) });
    const name = path.split('/').pop();
    this.title = el('h1', {}, name);
    document.title = `${name} – Portico`;
    root.replaceChildren(
      el('header', { class: 'bar' },
        el('a', { href: server.config.baseUrl, class: 'home', 'aria-label': 'Back to the launcher' }, 'Portico'),
        this.title, this.saveState, el('span', { class: 'spacer' }), this.status),
      el('nav', { class: 'toolbar', 'aria-label': 'Notebook actions' },
        button('Save', () => this.save(), { shortcut: 'Control+S' }),
        button('Checkpoints', () => this.saver.showCheckpoints()),
        button('Add a cell below', () => this.insert(this.index() + 1, 'code'), { icon: '+' }),
        button('Delete the cell', () => this.remove(), { icon: '✕' }),
        button('Move the cell up', () => this.move(-1), { icon: '↑' }),
        button('Move the cell down', () => this.move(1), { icon: '↓' }),
        this.kindSelect,
        button('Run the cell', () => this.active && this.run(this.active, 'advance'), { icon: '▶ Run', shortcut: 'Shift+Enter' }),
        button('Run all cells', () => this.runAll(), { icon: '▶▶ All' }),
        button('Interrupt the kernel', () => this.interrupt(), { icon: '■ Interrupt' }),
        button('Restart the kernel', () => this.restart(), { icon: '↻ Restart' }),
        this.kernelSelect),
      this.banner,
      el('main', { class: 'notebook' }, this.cellList));

    for (const json of content.cells || []) this.append(new Cell(this, json));
    if (!this.cells.length) this.append(new Cell(this, { cell_type: 'code', source: '' }));
    this.select(this.cells[0]);

    document.addEventListener('keydown', event => {
      if ((event.ctrlKey || event.metaKey) && event.key === 's') { event.preventDefault(); this.save(); }
    });
    window.addEventListener('beforeunload', event => { if (this.dirty) event.preventDefault(); });
    const every = Number(server.config.autosave || 0);
    if (every > 0) this.autosave = setInterval(() => { if (this.dirty) this.save({ auto: true }); }, every * 1000);
  }

  // kernel ------------------------------------------------------------------------------
  get session() { return this.link.session; }
  startKernel() { return this.link.start(); }
  interrupt() { return this.link.interrupt(); }
  restart() { return this.link.restart(); }

  showBanner(text, hideAfter) {
    this.banner.textContent = text;
    this.banner.hidden = false;
    clearTimeout(this.bannerTimer);
    if (hideAfter) this.bannerTimer = setTimeout(() => { this.banner.hidden = true; }, hideAfter);
  }

  async run(cell, then) {
    if (cell.kind === 'markdown') cell.renderMarkdown();
    if (then === 'advance') this.advanceFrom(cell);
    if (then === 'insert') this.insert(this.cells.indexOf(cell) + 1, 'code');
    if (cell.kind !== 'code' || !cell.source.trim()) return;
    this.touch();
    return this.link.execute(cell);
  }

  advanceFrom(cell) {
    const next = this.cells[this.cells.indexOf(cell) + 1];
    if (next) { this.select(next); next.kind === 'markdown' && !next.rendered.hidden ? next.rendered.focus() : next.editor.focus(); }
    else this.insert(this.cells.length, 'code');
  }

  async runAll() {
    for (const cell of [...this.cells]) {
      const reply = await this.run(cell, 'stay');
      if (reply && reply.content.status !== 'ok') break;
    }
  }

  // The kernel picker's choices: every kernelspec of the server.
  listKernels(specs) {
    this.kernelSelect.replaceChildren(...Object.values(specs.kernelspecs).map(spec =>
      el('option', { value: spec.name }, spec.display_name || spec.name)));
  }

  // command mode ------------------------------------------------------------------------
  // JupyterLab's keys on a selected cell: Enter edits; A and B insert above and below; D D
  // deletes; M, Y and R make it Markdown, code or raw; up and down (or K and J) select;
  // Shift+Enter, Ctrl+Enter and Alt+Enter run as in the editor.
  commandMode(cell) {
    this.select(cell);
    cell.node.focus();
  }

  commandKey(cell, event) {
    const index = this.cells.indexOf(cell);
    const key = event.key;
    const plain = !event.ctrlKey && !event.metaKey && !event.altKey && !event.shiftKey;
    const pressedD = this.lastKey === 'd' && Date.now() - this.lastKeyAt < 1000;
    this.lastKey = plain ? key.toLowerCase() : null;
    this.lastKeyAt = Date.now();
    let handled = true;
    if (key === 'Enter' && event.shiftKey) this.run(cell, 'advance');
    else if (key === 'Enter' && (event.ctrlKey || event.metaKey)) this.run(cell, 'stay');
    else if (key === 'Enter' && event.altKey) this.run(cell, 'insert');
    else if (key === 'Enter') cell.edit();
    else if (key === 'V' && event.shiftKey && !event.ctrlKey && !event.metaKey && !event.altKey) this.paste(index);
    else if (!plain && !(event.shiftKey && /^Arrow/.test(key))) handled = false;
    else if (key === 'ArrowUp' || key === 'k') { if (index > 0) this.commandMode(this.cells[index - 1]); }
    else if (key === 'ArrowDown' || key === 'j') { if (index < this.cells.length - 1) this.commandMode(this.cells[index + 1]); }
    else if (key === 'a') this.commandMode(this.insert(index, 'code', { edit: false }));
    else if (key === 'b') this.commandMode(this.insert(index + 1, 'code', { edit: false }));
    else if (key === 'd') { if (pressedD) { this.lastKey = null; this.remove({ edit: false }); } }
    else if (key === 'm') this.changeKind('markdown');
    else if (key === 'y') this.changeKind('code');
    else if (key === 'r') this.changeKind('raw');
    else if (key === 'c') this.clipboard = cell.toJSON();
    else if (key === 'x') { this.clipboard = cell.toJSON(); this.remove({ edit: false }); }
    else if (key === 'v') this.paste(index + 1);
    else if (key === 'z') this.undelete();
    else handled = false;
    if (handled) event.preventDefault();
  }

  // cells -------------------------------------------------------------------------------
  index() { return Math.max(0, this.cells.indexOf(this.active)); }

  select(cell) {
    if (this.active === cell) return;
    if (this.active) { this.active.node.classList.remove('active'); this.active.editor.setTabbable(false); }
    this.active = cell;
    cell.node.classList.add('active');
    cell.editor.setTabbable(true);
    this.kindSelect.value = cell.kind;
    this.cells.forEach((c, i) => c.node.setAttribute('aria-label', `Cell ${i + 1}, ${c.kind}`));
  }

  append(cell) {
    this.cells.push(cell);
    this.cellList.append(cell.node);
    cell.node.setAttribute('aria-label', `Cell ${this.cells.length}, ${cell.kind}`);
  }

  /** cell, put at index in the notebook and the page. */
  addAt(index, cell) {
    const before = this.cells[index];
    this.cells.splice(index, 0, cell);
    if (before) this.cellList.insertBefore(cell.node, before.node); else this.cellList.append(cell.node);
    this.touch();
    return cell;
  }

  insert(index, kind, { edit = true } = {}) {
    const cell = this.addAt(index, new Cell(this, { cell_type: kind, source: '' }));
    this.select(cell);
    if (edit) cell.editor.focus();
    return cell;
  }

  remove({ edit = true } = {}) {
    if (!this.active) return;
    const index = this.cells.indexOf(this.active);
    this.deleted.push([index, this.active.toJSON()]);
    if (this.deleted.length > 100) this.deleted.shift();
    this.active.destroy();
    this.cells.splice(index, 1);
    this.active = null;
    const next = this.cells.length ? this.cells[Math.min(index, this.cells.length - 1)] : this.insert(0, 'code', { edit });
    this.select(next);
    if (edit) next.editor.focus(); else next.node.focus();
    this.touch();
  }

  /** A copy of json (a new id: two cells never share one) at index, selected in command mode. */
  place(index, json) { this.commandMode(this.addAt(index, new Cell(this, { ...json, id: undefined }))); }

  paste(index) { if (this.clipboard) this.place(index, this.clipboard); }

  undelete() {
    const last = this.deleted.pop();
    if (last) this.place(Math.min(last[0], this.cells.length), last[1]);
  }

  move(delta) {
    const index = this.cells.indexOf(this.active);
    const target = index + delta;
    if (index < 0 || target < 0 || target >= this.cells.length) return;
    const [cell] = this.cells.splice(index, 1);
    this.cells.splice(target, 0, cell);
    const after = this.cells[target + 1];
    if (after) this.cellList.insertBefore(cell.node, after.node); else this.cellList.append(cell.node);
    this.active = null;
    this.select(cell);
    cell.editor.focus();
    this.touch();
  }

  changeKind(kind) {
    if (!this.active || this.active.kind === kind) return;
    this.active.setKind(kind);
    this.kindSelect.value = kind;
    this.touch();
  }

  // Widget state goes into metadata.widgets, as JupyterLab saves it (once a widget was shown).
  async keepWidgetState() {
    const kernel = this.link.kernel;
    if (!kernel || !kernel.portico_widgets) return;
    const { stateOf } = await import('./widgets.js');
    const state = await stateOf(kernel).catch(() => null);
    if (state) this.metadata.widgets = state;
  }

  // saving ------------------------------------------------------------------------------
  get dirty() { return this.saver.dirty; }
  touch() { this.saver.touch(); }
  save(options) { return this.saver.save(options); }

  toJSON() {
    return { cells: this.cells.map(c => c.toJSON()), metadata: this.metadata, nbformat: 4, nbformat_minor: this.minor };
  }
}

export async function showNotebook(root, server, path) {
  root.replaceChildren(el('p', { class: 'loading' }, `Opening ${path}…`));
  const model = await server.contents.get(path, { type: 'notebook', content: true });
  const notebook = new Notebook(root, server, path, model);
  await notebook.startKernel();
  return notebook;
}

export function notebookUrl(server, path, kernel) {
  return server.url('notebooks/' + encodePath(path)) + (kernel ? `?kernel=${encodeURIComponent(kernel)}` : '');
}
