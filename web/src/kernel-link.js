// The notebook's kernel: its session, the status shown, and every iopub message routed to its cell.
//
// Every iopub message is handled in one place, whoever asked for the execution: an execute_request
// sent from this page carries its cell's id in its msg_id ("portico-cell:<cell id>:<uuid>"), and the
// kernel copies that msg_id into the parent header of every message the execution causes. So a
// second page on the same notebook (sharing the kernel through the path's session) puts the output
// of an execution started in the first one into the same cell, as it happens.
import { KernelMessage } from '@jupyterlab/services';
import { UUID } from '@lumino/coreutils';
import { journal } from './server.js';
import { Cell } from './cell.js';
import { outputOf } from './outputs.js';
import { widgetContext } from './rich.js';

const CELL_MSG = /^portico-cell:([^:]+):/;

export class KernelLink {
  constructor(notebook) {
    this.notebook = notebook;
    this.session = null;
  }

  get kernel() { return this.session && this.session.kernel; }

  async start() {
    const nb = this.notebook;
    const specs = nb.server.specs;
    await specs.ready;
    nb.listKernels(specs.specs);
    const wanted = (nb.metadata.kernelspec || {}).name || new URLSearchParams(location.search).get('kernel');
    const name = wanted && specs.specs.kernelspecs[wanted] ? wanted : specs.specs.default;
    if (wanted && name !== wanted) nb.showBanner(`Kernel ${wanted} is not installed here; using ${name}.`);
    this.session = await nb.server.sessions.startNew({ path: nb.path, name: nb.path.split('/').pop(), type: 'notebook', kernel: { name } });
    this.session.kernelChanged.connect(() => this.showStatus());
    this.watch(this.session.kernel);
  }

  // A kernel of this session (at the start, or the picker's): its messages and state are shown.
  watch(kernel) {
    const nb = this.notebook;
    const spec = nb.server.specs.specs.kernelspecs[kernel.name];
    nb.metadata.kernelspec = { name: kernel.name, display_name: spec ? spec.display_name : kernel.name, language: spec ? spec.language : nb.language };
    kernel.statusChanged.connect(() => this.showStatus());
    kernel.connectionStatusChanged.connect((_, status) => this.connectionChanged(status));
    kernel.iopubMessage.connect((_, msg) => this.onIOPub(kernel.id, msg));
    kernel.info.then(info => { nb.metadata.language_info = info.language_info; }).catch(() => {});
    // ipywidgets: the comm target is the page's from the start; its manager comes with the first widget.
    kernel.registerCommTarget('jupyter.widget', async (comm, msg) => (await import('./widgets.js')).openComm(kernel, comm, msg));
    widgetContext.setKernel(kernel);
    nb.kernelSelect.value = kernel.name;
    window.portico = { notebook: nb, kernel };  // for tests and the console
    this.showStatus();
  }

  showStatus() {
    const kernel = this.kernel;
    if (!kernel) return;
    const nb = this.notebook;
    const state = kernel.connectionStatus !== 'connected' ? kernel.connectionStatus : kernel.status;
    nb.status.textContent = `${(nb.metadata.kernelspec || {}).display_name || kernel.name}: ${state}`;
    nb.status.dataset.state = state;
    if (kernel.status === 'restarting' || kernel.status === 'dead') for (const cell of nb.cells) cell.setRunning(false);
  }

  connectionChanged(status) {
    this.showStatus();
    if (status === 'connected') {
      if (this.lostConnection) this.notebook.showBanner('Connection restored; output sent meanwhile has been replayed.', 4000);
      this.lostConnection = false;
    } else {
      this.lostConnection = true;
      this.notebook.showBanner(status === 'connecting' ? 'Connection to the kernel lost: reconnecting…' : 'Disconnected from the kernel.');
    }
  }

  onIOPub(kernelId, msg) {
    if (journal.seen(kernelId, msg)) return;  // already handled before a reconnection
    const nb = this.notebook;
    const type = msg.header.msg_type;
    if (type === 'update_display_data') {
      for (const cell of nb.cells) cell.outputs.update(msg.content.transient.display_id, msg.content.data, msg.content.metadata);
      return;
    }
    const match = CELL_MSG.exec((msg.parent_header || {}).msg_id || '');
    if (!match) return;  // an execution no notebook page started
    let cell = nb.cells.find(c => c.id === match[1]);
    if (!cell) {
      if (type !== 'execute_input') return;
      cell = new Cell(nb, { id: match[1], cell_type: 'code', source: msg.content.code });  // added in another page
      nb.append(cell);
    }
    switch (type) {
      case 'execute_input': {
        // Another page's execution shows the code it ran; this page's own keeps any edit made since.
        const own = (msg.parent_header || {}).session === this.kernel.clientId;
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

  // Run a code cell: its outputs arrive through onIOPub; its input() prompts are answered in the cell.
  async execute(cell) {
    const kernel = this.kernel;
    if (!kernel) { this.notebook.showBanner('The kernel is not running yet.', 3000); return; }
    const msg = KernelMessage.createMessage({
      msgType: 'execute_request', channel: 'shell', session: kernel.clientId, username: kernel.username,
      msgId: `portico-cell:${cell.id}:${UUID.uuid4()}`, metadata: { cellId: cell.id },
      content: { code: cell.source, silent: false, store_history: true, user_expressions: {}, allow_stdin: true, stop_on_error: true },
    });
    cell.outputs.clear();
    cell.inputBox.replaceChildren();
    cell.setRunning(true);
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

  // complete_request and inspect_request: the reply's content, or null without a kernel.
  async complete(code, cursorPos) {
    if (!this.kernel) return null;
    return (await this.kernel.requestComplete({ code, cursor_pos: cursorPos })).content;
  }

  async inspect(code, cursorPos) {
    if (!this.kernel) return null;
    return (await this.kernel.requestInspect({ code, cursor_pos: cursorPos, detail_level: 0 })).content;
  }

  // The kernel picker: the same session, a kernel of another kernelspec.
  async changeKernel(name) {
    if (!this.session || !name || (this.kernel && this.kernel.name === name)) return;
    const nb = this.notebook;
    nb.status.textContent = `Starting ${name}…`;
    await this.session.changeKernel({ name });
    for (const cell of nb.cells) cell.setRunning(false);
    this.watch(this.session.kernel);
    nb.touch();
  }

  async interrupt() {
    if (this.kernel) await this.kernel.interrupt();
  }

  async restart() {
    if (!this.kernel) return;
    this.notebook.status.textContent = 'Restarting…';
    await this.kernel.restart();
    for (const cell of this.notebook.cells) cell.setRunning(false);
  }
}
