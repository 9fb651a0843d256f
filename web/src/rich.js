// The heavy renderers, each loaded the first time an output needs it (esbuild puts each dynamic
// import in a chunk of its own, so the first load of the page carries none of them):
// plotly.js for application/vnd.plotly.v1+json, vega-embed for Vega and Vega-Lite (with Vega's
// CSP-safe expression interpreter: the page allows no eval), KaTeX for math in Markdown and for
// text/latex. Each renders into a box that is already in the output, and on failure says so in it.
import { el } from './dom.js';

export const PLOTLY = 'application/vnd.plotly.v1+json';
export const WIDGET = 'application/vnd.jupyter.widget-view+json';

// The kernel widgets talk to (kernel-link.js sets it; outputs shown before it wait for it), and the
// widget state the notebook was saved with (notebook.js sets it).
let kernelSet;
export const widgetContext = {
  kernel: null,
  saved: null,
  ready: new Promise(resolve => { kernelSet = resolve; }),
  setKernel(kernel) { this.kernel = kernel; kernelSet(kernel); },
};
export const VEGA = ['application/vnd.vegalite.v5+json', 'application/vnd.vegalite.v4+json', 'application/vnd.vega.v5+json'];

function failed(box, what, error) {
  box.replaceChildren(el('pre', { class: 'render-error', role: 'alert' }, `Could not render ${what}: ${error && error.message || error}`));
}

export function renderPlotly(box, figure) {
  const target = el('div', { class: 'plotly-figure' });
  box.append(target);
  import('plotly.js-dist-min')
    .then(({ default: Plotly }) => Plotly.newPlot(target, figure.data || [], figure.layout || {}, { responsive: true, ...(figure.config || {}) }))
    .catch(error => failed(box, 'the Plotly figure', error));
}

export function renderVega(box, type, spec) {
  const target = el('div', { class: 'vega-figure' });
  box.append(target);
  Promise.all([import('vega-embed'), import('vega-interpreter')])
    .then(([{ default: embed }, { expressionInterpreter }]) =>
      embed(target, spec, {
        mode: type.includes('vegalite') ? 'vega-lite' : 'vega', renderer: 'svg', ast: true, expr: expressionInterpreter, actions: false,
      }))
    .catch(error => failed(box, 'the Vega chart', error));
}

// A widget's view (the widgets chunk); without its model (the kernel is gone and the notebook
// saved no state for it) the bundle's text/plain, as JupyterLab shows it. outputs (renderOutput,
// outputOf, sanitize) is how an Output widget shows what it captures: given by outputs.js, so that the
// widgets chunk imports none of the page's modules.
export function renderWidget(box, data, outputs) {
  const modelId = (data[WIDGET] || {}).model_id;
  const plain = () => box.append(el('pre', {}, [].concat(data['text/plain'] || 'A widget that is not here any more.').join('')));
  Promise.all([import('./widgets.js'), widgetContext.ready])
    .then(([widgets]) => widgets.showWidget(widgetContext.kernel, widgetContext.saved, box, modelId, outputs))
    .then(shown => { if (!shown) plain(); })
    .catch(error => failed(box, 'the widget', error));
}

// Math ------------------------------------------------------------------------------------
// Markdown's math is taken out before marked sees it (so `_` and `*` in TeX stay TeX) and put
// back as placeholders that DOMPurify keeps; typesetMath fills them in.

const CODE = /(\x60\x60\x60[\s\S]*?(?:\x60\x60\x60|$)|~~~[\s\S]*?(?:~~~|$)|\x60+[^\x60]*\x60+)/;  // fences and `spans` (\x60: a backquote)
const MATH = /(\$\$[\s\S]+?\$\$|\\\[[\s\S]+?\\\]|\\\([\s\S]+?\\\)|(?<![\\$\w])\$(?![\s$])(?:\\.|[^$\\\n])+?(?<!\s)\$(?!\d))/g;

export function takeMath(text) {
  const math = [];
  const parts = text.split(CODE).map((part, i) => i % 2 ? part : part.replace(MATH, found => {
    math.push(found);
    return `PORTICOMATH${math.length - 1}X`;
  }));
  return { text: parts.join(''), math };
}

function escapeAttr(text) {
  return text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function putMath(html, math) {
  return math.length ? html.replace(/PORTICOMATH(\d+)X/g, (_, n) => placeholder(math[Number(n)])) : html;
}

// TeX with its delimiters -> a placeholder span: display math for $$…$$, \[…\] and environments.
function placeholder(tex) {
  let body = tex, display = false;
  if (tex.startsWith('$$')) { body = tex.slice(2, -2); display = true; }
  else if (tex.startsWith('\\[')) { body = tex.slice(2, -2); display = true; }
  else if (tex.startsWith('\\(')) body = tex.slice(2, -2);
  else if (tex.startsWith('$')) body = tex.slice(1, -1);
  else display = true;
  return `<span class="math" data-display="${display}" data-tex="${escapeAttr(body)}">${escapeAttr(tex)}</span>`;
}

// text/latex, as IPython's Math and Latex give it: delimited TeX, or an environment.
export function latexPlaceholder(tex) {
  const trimmed = tex.trim();
  const whole = trimmed.match(/^(\$\$[\s\S]+\$\$|\$[\s\S]+\$|\\\[[\s\S]+\\\]|\\\([\s\S]+\\\))$/);
  return placeholder(whole ? trimmed : trimmed.startsWith('\\begin') ? trimmed : `$$${trimmed}$$`);
}

export function typesetMath(node) {
  const spans = [...node.querySelectorAll('span.math[data-tex]:not([data-typeset])')];
  if (!spans.length) return;
  import('katex').then(({ default: katex }) => {
    for (const span of spans) {
      span.dataset.typeset = 'true';
      katex.render(span.dataset.tex, span, { displayMode: span.dataset.display === 'true', throwOnError: false, output: 'htmlAndMathml' });
    }
  }).catch(error => { for (const span of spans) span.title = `Could not typeset: ${error.message}`; });
}
