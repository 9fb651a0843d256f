// ipywidgets in the page: a widget manager (@jupyter-widgets/base-manager) over the kernel's comms,
// with the controls of @jupyter-widgets/controls and an Output widget that captures the output of
// the executions it is told of (ipywidgets 8 sends its msg_id), as JupyterLab's does. This module
// is a chunk of its own, loaded with the first widget a kernel opens or a notebook shows; its
// style sheet (widgets.css) is linked then. It imports none of the page's modules: how outputs are
// made and shown comes with the first widget shown (showWidget's outputs).
import { ManagerBase } from '@jupyter-widgets/base-manager';
import * as base from '@jupyter-widgets/base';
import * as controls from '@jupyter-widgets/controls';
import { Widget } from '@lumino/widgets';

const STATE_MIME = 'application/vnd.jupyter.widget-state+json';

function linkStyles() {
  if (document.querySelector('link[data-widgets]')) return;
  const script = document.querySelector('script[src*="app.js"]');
  const link = document.createElement('link');
  link.rel = 'stylesheet';
  link.dataset.widgets = 'true';
  link.href = new URL('widgets.css', script ? script.src : location.href).href;
  document.head.append(link);
}

// The Output widget: while its msg_id is set, the kernel's output for that execution goes to it
// (the message hook returns false, so the cell does not show it as well).
class OutputModel extends base.DOMWidgetModel {
  defaults() {
    return { ...super.defaults(), _model_name: 'OutputModel', _view_name: 'OutputView', _model_module: '@jupyter-widgets/output',
      _view_module: '@jupyter-widgets/output', _model_module_version: '1.0.0', _view_module_version: '1.0.0', msg_id: '', outputs: [] };
  }

  initialize(attributes, options) {
    super.initialize(attributes, options);
    this.on('change:msg_id', () => this.capture());
  }

  capture() {
    const kernel = this.widget_manager.kernel;
    if (this.hooked) { kernel.removeMessageHook(this.hooked.id, this.hooked.hook); this.hooked = null; }
    const id = this.get('msg_id');
    if (!id) return;
    const hook = msg => {
      const type = msg.header.msg_type;
      if (type === 'clear_output') { this.set('outputs', []); this.save_changes(); return false; }
      const helpers = this.widget_manager.outputs;
      if (!helpers) return true;  // no widget shown yet: the cell shows its output
      const output = helpers.outputOf(msg);
      if (!output) return true;
      this.set('outputs', [...this.get('outputs'), output]);
      this.save_changes();
      return false;
    };
    kernel.registerMessageHook(id, hook);
    this.hooked = { id, hook };
  }
}

class OutputView extends base.DOMWidgetView {
  render() {
    this.el.classList.add('widget-output');
    this.listenTo(this.model, 'change:outputs', () => this.show());
    this.show();
  }

  show() {
    const { renderOutput } = this.model.widget_manager.outputs;
    this.el.replaceChildren(...(this.model.get('outputs') || []).map(o => renderOutput(o)));
  }
}

// The HTML widgets' value goes through the page's sanitizer, as every other HTML output does
// (ipywidgets sets it as it comes); HTMLMath shows its TeX as text (the page has no MathJax).
// A view of its own (ipywidgets' HTMLView renders the raw value before any subclass could step in).
class SafeHTMLView extends controls.StringView {
  render() {
    super.render();
    this.el.classList.add('widget-html');
    this.content = document.createElement('div');
    this.content.classList.add('widget-html-content');
    this.el.appendChild(this.content);
    this.update();
  }

  update() {
    if (this.content) this.content.innerHTML = this.model.widget_manager.outputs.sanitize(this.model.get('value') || '');
    return super.update();
  }
}

const MODULES = {
  '@jupyter-widgets/base': base,
  '@jupyter-widgets/controls': { ...controls, HTMLView: SafeHTMLView, HTMLMathView: SafeHTMLView },
  '@jupyter-widgets/output': { OutputModel, OutputView },
};

class Manager extends ManagerBase {
  constructor(kernel) {
    super();
    this.kernel = kernel;
    this.outputs = null;  // { renderOutput, outputOf, sanitize }, given with the first widget shown
  }

  async loadClass(className, moduleName, moduleVersion) {
    const found = (MODULES[moduleName] || {})[className];
    if (!found) throw new Error(`The page has no widget ${className} of ${moduleName}@${moduleVersion}`);
    return found;
  }

  async _create_comm(targetName, modelId, data, metadata, buffers) {
    const comm = this.kernel.createComm(targetName, modelId);
    if (data || metadata) comm.open(data, metadata, buffers);
    return new base.shims.services.Comm(comm);
  }

  async _get_comm_info() {
    const reply = await this.kernel.requestCommInfo({ target_name: this.comm_target_name });
    return reply.content.status === 'ok' ? reply.content.comms : {};
  }
}

// One manager per kernel connection (a restart keeps it; the picker's new kernel gets a new one).
function managerFor(kernel) {
  linkStyles();
  if (!kernel.portico_widgets) kernel.portico_widgets = new Manager(kernel);
  return kernel.portico_widgets;
}

// The kernel opened a widget's comm (the page registers the target and loads this module then).
export function openComm(kernel, comm, msg) {
  return managerFor(kernel).handle_comm_open(new base.shims.services.Comm(comm), msg);
}

// A widget view into box: the live model, else the one the notebook saved (static, not connected).
export async function showWidget(kernel, saved, box, modelId, outputs) {
  const manager = managerFor(kernel);
  manager.outputs = outputs;
  if (!manager.has_model(modelId) && saved && saved.state && saved.state[modelId]) await manager.set_state(saved);
  if (!manager.has_model(modelId)) return false;
  const view = await manager.create_view(await manager.get_model(modelId));
  Widget.attach(view.luminoWidget, box);
  return true;
}

// What the notebook saves in metadata.widgets, as JupyterLab does.
export async function stateOf(kernel) {
  if (!kernel || !kernel.portico_widgets) return null;
  return { [STATE_MIME]: await kernel.portico_widgets.get_state({ drop_defaults: true }) };
}

export { STATE_MIME };
