// The notebook: cells with CodeMirror editors, outputs fed by the kernel's iopub broadcast, save and autosave.
//
// Every iopub message is handled in one place, whoever asked for the execution: an execute_request
// sent from this page carries its cell's id in its msg_id ("portico-cell:<cell id>:<uuid>"), and the
// kernel copies that msg_id into the parent header of every message the execution causes. So a
// second page on the same notebook (sharing the kernel through the path's session) puts the output
// of an execution started in the first one into the same cell, as it happens.
import { KernelMessage } from '@jupyterlab/services';
import { UUID } from '@lumino/coreutils';
import { createEditor } from './editor.js';
import { journal } from './server.js';
import { el, button, encodePath } from './dom.js';
import { Outputs, outputOf, markdownToHtml } from './outputs.js';

const CELL_MSG = /^portico-cell:([^:]+):/;

function joined(source) {
  return Array.isArray(source) ? source.join('') : String(source ?? '');
}

function newCellId() {
  return UUID.uuid4().replace(/-/g, '').slice(0, 16);
}

class Cell {
  constructor(notebook, json) {
    this.notebook = notebook;
    this.id = typeof json.id === 'string' && /^[a-zA-Z0-9-_]{1,64}$/.test(json.id) ? json.id : newCellId();
    this.kind = json.cell_type || 'code';
    this.metadata = json.metadata || {};
    this.attachments = json.attachments;
    this.count = json.execution_count ?? null;
    this.running = false;
    this.outputs = new Outputs(json.outputs || [], () => notebook.touch());
    this.prompt = el('div', { class: 'prompt', 'aria-hidden': 'true' });
    this.rendered = el('div', { class: 'markdown rendered', tabindex: '0', role: 'button',
      'aria-label': 'Markdown cell: press Enter to edit', ondblclick: () => this.edit(),
      onkeydown: event => { if (event.key === 'Enter') { event.preventDefault(); this.edit(); } } });
    this.editorBox = el('div', { class: 'editor' });
    this.inputBox = el('div', { class: 'stdin' });
    this.node = el('section', { class: 'cell', role: 'group', dataset: { cellId: this.id },
      onfocusin: () => notebook.select(this) },
    this.prompt, el('div', { class: 'body' }, this.editorBox, this.rendered, this.outputs.node, this.inputBox));
    this.editor = createEditor(this.editorBox, joined(json.source), this.kind, notebook.language, {
      run: () => notebook.run(this, 'stay'),
      runAndAdvance: () => notebook.run(this, 'advance'),
      runAndInsert: () => notebook.run(this, 'insert'),
      save: () => notebook.save(),
      onChange: () => notebook.touch(),
      onFocus: () => notebook.select(this),
      label: 'Cell source',
    });
    this.setKind(this.kind, { render: this.kind === 'markdown' && this.source.trim() !== '' });
  }

  get source() { return this.editor.text; }

  setKind(kind, { render = false } = {}) {
    this.kind = kind;
    this.node.dataset.kind = kind;
    this.editor.setKind(kind);
    if (kind !== 'code') { this.outputs.clear(); this.count = null; }
    this.outputs.node.hidden = kind !== 'code';
    this.showPrompt();
    if (render) this.renderMarkdown(); else this.edit(false);
  }

  renderMarkdown() {
    this.rendered.innerHTML = markdownToHtml(this.source || '*Empty markdown cell*');
    this.rendered.hidden = false;
    this.editorBox.hidden = true;
  }

  edit(focus = true) {
    this.rendered.hidden = true;
    this.editorBox.hidden = false;
    if (focus) this.editor.focus();
  }

  showPrompt() {
    if (this.kind !== 'code') { this.prompt.textContent = ''; return; }
    this.prompt.textContent = `[${this.running ? '*' : this.count ?? ' '}]:`;
    this.node.classList.toggle('running', this.running);
  }

  setRunning(running, count) {
    this.running = running;
    if (count !== undefined) this.count = count;
    this.showPrompt();
  }

  // input(): an inline prompt whose reply goes back on the stdin channel.
  askInput(msg, reply) {
    const field = el('input', { type: msg.content.password ? 'password' : 'text', 'aria-label': msg.content.prompt || 'Input',
      autocomplete: 'off' });
    const form = el('form', { class: 'input-request', onsubmit: event => {
      event.preventDefault();
      reply(field.value);
      form.replaceWith(el('pre', { class: 'stdin-echo' }, (msg.content.prompt || '') + (msg.content.password ? '········' : field.value)));
    } }, el('label', {}, el('span', {}, msg.content.prompt || ''), field));
    this.inputBox.replaceChildren(form);
    field.focus();
  }

  toJSON() {
    const base = { id: this.id, cell_type: this.kind, metadata: this.metadata, source: this.source };
    if (this.kind === 'code') return { ...base, execution_count: this.count, outputs: this.outputs.toJSON() };
    if (this.attachments && this.kind !== 'raw') base.attachments = this.attachments;
    return base;
  }

  destroy() { this.editor.destroy(); this.node.remove(); }
}

class Notebook {
  constructor(root, server, path, model) {
    this.root = root;
    this.server = server;
    this.path = path;
    const content = model.content;
    this.metadata = content.metadata || {};
    this.minor = Math.max(5, content.nbformat_minor || 0);
    this.language = (this.metadata.language_info || {}).name || (this.metadata.kernelspec || {}).language || 'python';
    this.dirty = false;
    this.cells = [];
    this.active = null;
    this.session = null;

    this.status = el('span', { class: 'kernel-status', role: 'status', 'aria-live': 'polite' }, 'Starting kernel…');
    this.saveState = el('span', { class: 'save-state', role: 'status', 'aria-live': 'polite' }, 'Saved');
    this.banner = el('div', { class: 'banner', role: 'alert', hidden: true });
    this.cellList = el('div', { class: 'cells' });
    this.kindSelect = el('select', { 'aria-label': 'Cell type', onchange: () => this.changeKind(this.kindSelect.value) },
      el('option', { value: 'code' }, 'Code'), el('option', { value: 'markdown' }, 'Markdown'), el('option', { value: 'raw' }, 'Raw'));
    const name = path.split('/').pop();
    this.title = el('h1', {}, name);
    document.title = `${name} – Portico`;
    root.replaceChildren(
      el('header', { class: 'bar' },
        el('a', { href: server.config.baseUrl, class: 'home', 'aria-label': 'Back to the launcher' }, 'Portico'),
        this.title, this.saveState, el('span', { class: 'spacer' }), this.status),
      el('nav', { class: 'toolbar', 'aria-label': 'Notebook actions' },
        button('Save', () => this.save(), { shortcut: 'Control+S' }),
        button('Add a cell below', () => this.insert(this.index() + 1, 'code'), { icon: '+' }),
        button('Delete the cell', () => this.remove(), { icon: '✕' }),
        button('Move the cell up', () => this.move(-1), { icon: '↑' }),
        button('Move the cell down', () => this.move(1), { icon: '↓' }),
        this.kindSelect,
        button('Run the cell', () => this.active && this.run(this.active, 'advance'), { icon: '▶ Run', shortcut: 'Shift+Enter' }),
        button('Run all cells', () => this.runAll(), { icon: '▶▶ All' }),
        button('Interrupt the kernel', () => this.interrupt(), { icon: '■ Interrupt' }),
        button('Restart the kernel', () => this.restart(), { icon: '↻ Restart' })),
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
  async startKernel() {
    const specs = this.server.specs;
    await specs.ready;
    const wanted = (this.metadata.kernelspec || {}).name || new URLSearchParams(location.search).get('kernel');
    const name = wanted && specs.specs.kernelspecs[wanted] ? wanted : specs.specs.default;
    if (wanted && name !== wanted) this.showBanner(`Kernel ${wanted} is not installed here; using ${name}.`);
    this.session = await this.server.sessions.startNew({ path: this.path, name: this.path.split('/').pop(), type: 'notebook', kernel: { name } });
    const kernel = this.session.kernel;
    const spec = specs.specs.kernelspecs[kernel.name];
    this.metadata.kernelspec = { name: kernel.name, display_name: spec ? spec.display_name : kernel.name, language: spec ? spec.language : this.language };
    kernel.statusChanged.connect(() => this.showStatus());
    kernel.connectionStatusChanged.connect((_, status) => this.connectionChanged(status));
    kernel.iopubMessage.connect((_, msg) => this.onIOPub(kernel.id, msg));
    this.session.kernelChanged.connect(() => this.showStatus());
    this.showStatus();
    kernel.info.then(info => { this.metadata.language_info = info.language_info; }).catch(() => {});
    window.portico = { notebook: this, kernel };  // for tests and the console
  }

  showStatus() {
    const kernel = this.session && this.session.kernel;
    if (!kernel) return;
    const state = kernel.connectionStatus !== 'connected' ? kernel.connectionStatus : kernel.status;
    this.status.textContent = `${(this.metadata.kernelspec || {}).display_name || kernel.name}: ${state}`;
    this.status.dataset.state = state;
    if (kernel.status === 'restarting' || kernel.status === 'dead') for (const cell of this.cells) cell.setRunning(false);
  }

  connectionChanged(status) {
    this.showStatus();
    if (status === 'connected') {
      if (this.lostConnection) this.showBanner('Connection restored; output sent meanwhile has been replayed.', 4000);
      this.lostConnection = false;
    } else {
      this.lostConnection = true;
      this.showBanner(status === 'connecting' ? 'Connection to the kernel lost: reconnecting…' : 'Disconnected from the kernel.');
    }
  }

  showBanner(text, hideAfter) {
    this.banner.textContent = text;
    this.banner.hidden = false;
    clearTimeout(this.bannerTimer);
    if (hideAfter) this.bannerTimer = setTimeout(() => { this.banner.hidden = true; }, hideAfter);
  }

  onIOPub(kernelId, msg) {
    if (journal.seen(kernelId, msg)) return;  // already handled before a reconnection
    const type = msg.header.msg_type;
    if (type === 'update_display_data') {
      for (const cell of this.cells) cell.outputs.update(msg.content.transient.display_id, msg.content.data, msg.content.metadata);
      return;
    }
    const match = CELL_MSG.exec((msg.parent_header || {}).msg_id || '');
    if (!match) return;  // an execution no notebook page started
    let cell = this.cells.find(c => c.id === match[1]);
    if (!cell) {
      if (type !== 'execute_input') return;
      cell = new Cell(this, { id: match[1], cell_type: 'code', source: msg.content.code });  // added in another page
      this.append(cell);
    }
    switch (type) {
      case 'execute_input': {
        // Another page's execution shows the code it ran; this page's own keeps any edit made since.
        const own = (msg.parent_header || {}).session === this.session.kernel.clientId;
        if (!own && cell.source !== msg.content.code) cell.editor.text = msg.content.code;
        cell.outputs.clear();
        cell.inputBox.replaceChildren();
        cell.setRunning(true, msg.content.execution_count);
        break;
      }
      case 'status':
        if (msg.content.execution_state === 'idle') cell.setRunning(false);
        break;
      case 'clear_output':
        cell.outputs.clear(msg.content.wait);
        break;
      default: {
        const output = outputOf(msg);
        if (output) cell.outputs.add(output);
        if (type === 'execute_result') cell.setRunning(cell.running, msg.content.execution_count);
      }
    }
  }

  async run(cell, then) {
    if (cell.kind === 'markdown') cell.renderMarkdown();
    if (then === 'advance') this.advanceFrom(cell);
    if (then === 'insert') this.insert(this.cells.indexOf(cell) + 1, 'code');
    if (cell.kind !== 'code' || !cell.source.trim()) return;
    const kernel = this.session && this.session.kernel;
    if (!kernel) { this.showBanner('The kernel is not running yet.', 3000); return; }
    const msg = KernelMessage.createMessage({
      msgType: 'execute_request', channel: 'shell', session: kernel.clientId, username: kernel.username,
      msgId: `portico-cell:${cell.id}:${UUID.uuid4()}`, metadata: { cellId: cell.id },
      content: { code: cell.source, silent: false, store_history: true, user_expressions: {}, allow_stdin: true, stop_on_error: true },
    });
    cell.outputs.clear();
    cell.inputBox.replaceChildren();
    cell.setRunning(true);
    this.touch();
    const future = kernel.sendShellMessage(msg, true, true);
    future.onStdin = request => {
      if (request.header.msg_type === 'input_request') cell.askInput(request, value => kernel.sendInputReply({ status: 'ok', value }, request.header));
    };
    try {
      const reply = await future.done;
      if (reply && reply.content) cell.setRunning(false, reply.content.execution_count ?? cell.count);
      return reply;
    } catch {
      cell.setRunning(false);  // the kernel was restarted or shut down under the execution
    } finally {
      cell.inputBox.querySelector('form')?.remove();
    }
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

  async interrupt() {
    if (this.session && this.session.kernel) await this.session.kernel.interrupt();
  }

  async restart() {
    if (!this.session || !this.session.kernel) return;
    this.status.textContent = 'Restarting…';
    await this.session.kernel.restart();
    for (const cell of this.cells) cell.setRunning(false);
  }

  // cells -------------------------------------------------------------------------------
  index() { return Math.max(0, this.cells.indexOf(this.active)); }

  select(cell) {
    if (this.active === cell) return;
    if (this.active) this.active.node.classList.remove('active');
    this.active = cell;
    cell.node.classList.add('active');
    this.kindSelect.value = cell.kind;
    this.cells.forEach((c, i) => c.node.setAttribute('aria-label', `Cell ${i + 1}, ${c.kind}`));
  }

  append(cell) {
    this.cells.push(cell);
    this.cellList.append(cell.node);
    cell.node.setAttribute('aria-label', `Cell ${this.cells.length}, ${cell.kind}`);
  }

  insert(index, kind) {
    const cell = new Cell(this, { cell_type: kind, source: '' });
    const before = this.cells[index];
    this.cells.splice(index, 0, cell);
    if (before) this.cellList.insertBefore(cell.node, before.node); else this.cellList.append(cell.node);
    this.select(cell);
    cell.editor.focus();
    this.touch();
    return cell;
  }

  remove() {
    if (!this.active) return;
    const index = this.cells.indexOf(this.active);
    this.active.destroy();
    this.cells.splice(index, 1);
    this.active = null;
    if (!this.cells.length) this.insert(0, 'code');
    else { const next = this.cells[Math.min(index, this.cells.length - 1)]; this.select(next); next.editor.focus(); }
    this.touch();
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
    this.select(this.active);
    this.touch();
  }

  // saving ------------------------------------------------------------------------------
  touch() {
    if (!this.dirty) { this.dirty = true; this.saveState.textContent = 'Unsaved changes'; this.title.classList.add('dirty'); }
  }

  toJSON() {
    return { cells: this.cells.map(c => c.toJSON()), metadata: this.metadata, nbformat: 4, nbformat_minor: this.minor };
  }

  async save({ auto = false } = {}) {
    if (this.saving) return this.saving;
    this.dirty = false;  // changes made while the request runs mark it dirty again
    this.saveState.textContent = 'Saving…';
    this.saving = this.server.contents.save(this.path, { type: 'notebook', format: 'json', content: this.toJSON() })
      .then(() => {
            if (!this.dirty) { this.saveState.textContent = `${auto ? 'Autosaved' : 'Saved'} ${new Date().toLocaleTimeString()}`; this.title.classList.remove('dirty'); }
      })
      .catch(async error => {
        this.dirty = true;
        let message = error.message;
        try { message = JSON.parse(await error.response.text()).message; } catch { /* keep the error's own */ }
        this.saveState.textContent = 'Not saved';
        this.showBanner(`Saving failed: ${message}`);
      })
      .finally(() => { this.saving = null; });
    return this.saving;
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
