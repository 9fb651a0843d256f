// One cell of the notebook: its model (kind, source, outputs, execution count), its editor and
// its DOM. What the cell asks for (running, saving, selection) goes to the notebook it belongs to.
import { UUID } from '@lumino/coreutils';
import { createEditor } from './editor.js';
import { el } from './dom.js';
import { Outputs, showMarkdown, renderOutput } from './outputs.js';

function joined(source) {
  return Array.isArray(source) ? source.join('') : String(source ?? '');
}

function newCellId() {
  return UUID.uuid4().replace(/-/g, '').slice(0, 16);
}

export class Cell {
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
    this.inspectBox = el('div', { class: 'inspect', role: 'note', 'aria-label': 'Documentation', hidden: true });
    this.inputBox = el('div', { class: 'stdin' });
    // Command mode is the focused cell itself (tabindex -1: reached by Escape, not by Tab).
    this.node = el('section', { class: 'cell', role: 'group', tabindex: '-1', dataset: { cellId: this.id },
      onfocusin: () => notebook.select(this),
      onkeydown: event => { if (event.target === this.node) notebook.commandKey(this, event); } },
    this.prompt, el('div', { class: 'body' }, this.editorBox, this.inspectBox, this.rendered, this.outputs.node, this.inputBox));
    this.editor = createEditor(this.editorBox, joined(json.source), this.kind, notebook.language, {
      run: () => notebook.run(this, 'stay'),
      runAndAdvance: () => notebook.run(this, 'advance'),
      runAndInsert: () => notebook.run(this, 'insert'),
      save: () => notebook.save(),
      onChange: () => { this.inspectBox.hidden = true; notebook.touch(); },
      complete: (code, pos) => notebook.link.complete(code, pos),
      inspect: (code, pos) => this.inspect(code, pos),
      escape: () => notebook.commandMode(this),
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
    showMarkdown(this.rendered, this.source || '*Empty markdown cell*');
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

  // Shift+Tab: the kernel's documentation of what is at the cursor, under the editor until the next edit.
  async inspect(code, pos) {
    const reply = await this.notebook.link.inspect(code, pos).catch(() => null);
    const text = reply && reply.status === 'ok' && reply.found ? (reply.data || {})['text/plain'] : null;
    this.inspectBox.replaceChildren(text
      ? renderOutput({ output_type: 'stream', name: 'inspect', text })
      : el('p', {}, 'No documentation found.'));
    this.inspectBox.hidden = false;
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
