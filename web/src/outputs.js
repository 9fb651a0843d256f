// Cell outputs: the nbformat output list of a cell, and its rendering per MIME type.
// HTML, Markdown and SVG go through DOMPurify; text goes through ansi_up, which escapes it.
import DOMPurify from 'dompurify';
import { marked } from 'marked';
import { AnsiUp } from 'ansi_up';
import { el } from './dom.js';
import { PLOTLY, VEGA, WIDGET, latexPlaceholder, putMath, renderPlotly, renderVega, renderWidget, takeMath, typesetMath } from './rich.js';

const ansi = new AnsiUp();
ansi.use_classes = true;

// Richest first, as JupyterLab picks.
const ORDER = [WIDGET, PLOTLY, ...VEGA, 'text/html', 'image/svg+xml', 'image/png', 'image/jpeg', 'text/markdown', 'text/latex',
  'application/json', 'text/plain'];

export function sanitize(html) {
  return DOMPurify.sanitize(html, { ADD_ATTR: ['target'], FORBID_TAGS: ['style'] });
}

export function markdownToHtml(text) {
  const { text: rest, math } = takeMath(text);
  return sanitize(putMath(marked.parse(rest, { gfm: true, async: false }), math));
}

// Markdown (a cell's or an output's) into node, its math typeset once KaTeX has loaded.
export function showMarkdown(node, text) {
  node.innerHTML = markdownToHtml(text);
  typesetMath(node);
}

function joined(value) {
  return Array.isArray(value) ? value.join('') : String(value ?? '');
}

function ansiPre(text, cls) {
  const pre = el('pre', { class: cls });
  pre.innerHTML = ansi.ansi_to_html(text);
  return pre;
}

function renderData(data) {
  const type = ORDER.find(t => t in data) || Object.keys(data)[0];
  const value = data[type];
  const box = el('div', { class: 'mime', dataset: { mime: type } });
  switch (type) {
    case 'text/html':
      box.innerHTML = sanitize(joined(value));
      break;
    case 'image/svg+xml': {
      const clean = DOMPurify.sanitize(joined(value), { USE_PROFILES: { svg: true, svgFilters: true } });
      box.append(el('img', { alt: 'SVG output', src: 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(clean) }));
      break;
    }
    case 'image/png':
    case 'image/jpeg':
      box.append(el('img', { alt: `${type.slice(6).toUpperCase()} output`, src: `data:${type};base64,${joined(value).replace(/\n/g, '')}` }));
      break;
    case 'text/markdown':
      box.classList.add('markdown');
      showMarkdown(box, joined(value));
      break;
    case 'text/latex':
      box.innerHTML = sanitize(latexPlaceholder(joined(value)));
      typesetMath(box);
      break;
    case WIDGET:
      renderWidget(box, data, { renderOutput, outputOf, sanitize });
      break;
    case PLOTLY:
      renderPlotly(box, value);
      break;
    case VEGA[0]: case VEGA[1]: case VEGA[2]:
      renderVega(box, type, value);
      break;
    case 'application/json':
      box.append(el('pre', {}, JSON.stringify(value, null, 2)));
      break;
    default:
      box.append(ansiPre(joined(value)));
  }
  return box;
}

// A stream's <pre>, with the ANSI parser that rendered it: more text of the same stream is
// parsed and appended alone (colours carry over), so a long output costs what arrives, not
// its whole length again on every message.
function streamPre(output) {
  const pre = el('pre', { class: `stream ${output.name}` });
  pre.ansi = new AnsiUp();
  pre.ansi.use_classes = true;
  pre.innerHTML = pre.ansi.ansi_to_html(joined(output.text));
  return pre;
}

function appendStream(pre, text) {
  pre.insertAdjacentHTML('beforeend', pre.ansi.ansi_to_html(text));
}

export function renderOutput(output) {
  switch (output.output_type) {
    case 'stream':
      return streamPre(output);
    case 'error':
      return el('div', { class: 'error', role: 'alert' },
        ansiPre((output.traceback && output.traceback.length ? output.traceback : [`${output.ename}: ${output.evalue}`]).join('\n')));
    case 'execute_result':
    case 'display_data':
      return renderData(output.data || {});
    default:
      return el('pre', {}, `(unknown output type ${output.output_type})`);
  }
}

// The output list of one code cell, kept as nbformat outputs and fed by iopub messages.
export class Outputs {
  constructor(outputs = [], onChange = () => {}) {
    this.list = outputs.map(o => ({ ...o }));
    this.node = el('div', { class: 'outputs', 'aria-live': 'polite' });
    this.onChange = onChange;
    this.clearPending = false;
    this.render();
  }

  render() {
    this.node.replaceChildren(...this.list.map(output => el('div', { class: 'output' }, renderOutput(output))));
  }

  clear(wait = false) {
    if (wait) { this.clearPending = true; return; }
    this.list = [];
    this.clearPending = false;
    this.render();
    this.onChange();
  }

  add(output) {
    if (this.clearPending) this.clear();
    const last = this.list[this.list.length - 1];
    if (output.output_type === 'stream' && last && last.output_type === 'stream' && last.name === output.name) {
      const text = joined(output.text);
      last.text = joined(last.text) + text;
      appendStream(this.node.lastChild.firstChild, text);
    } else {
      this.list.push(output);
      this.node.append(el('div', { class: 'output' }, renderOutput(output)));
    }
    this.onChange();
  }

  // update_display_data: every output of this cell with the display id takes the new data.
  update(displayId, data, metadata) {
    let changed = false;
    for (const output of this.list) {
      if (output.transient && output.transient.display_id === displayId) {
        output.data = data;
        output.metadata = metadata || {};
        changed = true;
      }
    }
    if (changed) { this.render(); this.onChange(); }
    return changed;
  }

  // Outputs as saved: without the transient field, which nbformat does not allow on disk.
  toJSON() {
    return this.list.map(({ transient, ...rest }) => rest);
  }
}

// An iopub message as an nbformat output, or null for the ones that are not outputs.
export function outputOf(msg) {
  const type = msg.header.msg_type;
  const c = msg.content;
  switch (type) {
    case 'stream':
      return { output_type: 'stream', name: c.name, text: c.text };
    case 'display_data':
      return { output_type: 'display_data', data: c.data, metadata: c.metadata || {}, transient: c.transient };
    case 'execute_result':
      return { output_type: 'execute_result', data: c.data, metadata: c.metadata || {}, execution_count: c.execution_count };
    case 'error':
      return { output_type: 'error', ename: c.ename, evalue: c.evalue, traceback: c.traceback };
    default:
      return null;
  }
}
