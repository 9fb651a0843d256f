// Drives Portico with the real @jupyterlab/services client, as JupyterLab does.
// Usage: node scenario.mjs <baseUrl> <token> <v1|json>; prints one JSON object of findings.
import { KernelAPI, KernelManager, ServerConnection } from '@jupyterlab/services';
import WebSocket from 'ws';

const [baseUrl, token, mode] = process.argv.slice(2);
const protocols = [];

// The client offers v1.kernel.websocket.jupyter.org; to exercise the JSON protocol we offer nothing.
class RecordingWebSocket extends WebSocket {
  constructor(url, offered) {
    super(url, mode === 'v1' ? offered : undefined);
    this.addEventListener('open', () => protocols.push(this.protocol));
  }
}

const serverSettings = ServerConnection.makeSettings({
  baseUrl,
  wsUrl: baseUrl.replace(/^http/, 'ws'),
  token,
  appendToken: true,
  WebSocket: RecordingWebSocket,
  fetch,
  Request,
  Headers
});

const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

async function run(kernel, code, onStdin) {
  const future = kernel.requestExecute({ code, allow_stdin: Boolean(onStdin) });
  const iopub = [];
  future.onIOPub = msg => iopub.push(msg);
  if (onStdin) future.onStdin = msg => onStdin(msg);
  let reply;
  try {
    reply = await future.done;
  } catch (e) {
    reply = e;
  }
  return { reply: reply?.content, iopub };
}

function connected(conn) {
  return new Promise(resolve => {
    if (conn.connectionStatus === 'connected') return resolve();
    conn.connectionStatusChanged.connect((_, status) => status === 'connected' && resolve());
  });
}

const types = msgs => msgs.map(m => m.header.msg_type);
const found = {};
const manager = new KernelManager({ serverSettings });
await manager.ready;
const kernel = await manager.startNew({ name: 'python3' });
found.started = kernel.id;

let r = await run(kernel, "print('hi')");
found.stream = r.iopub.filter(m => m.header.msg_type === 'stream').map(m => m.content.text).join('');
r = await run(kernel, '6*7');
found.execute_result = r.iopub.find(m => m.header.msg_type === 'execute_result')?.content.data['text/plain'];
r = await run(
  kernel,
  `import base64\nfrom IPython.display import Image, display\ndisplay(Image(data=base64.b64decode('${PNG}'), format='png'))`
);
found.png = r.iopub.find(m => m.header.msg_type === 'display_data')?.content.data['image/png'];
r = await run(kernel, '1/0');
found.error = r.iopub.find(m => m.header.msg_type === 'error')?.content.ename;
found.error_reply = r.reply?.status;

r = await run(kernel, "print('got', input('name? '))", msg => {
  found.prompt = msg.content.prompt;
  kernel.sendInputReply({ status: 'ok', value: 'Ada' }, msg.header);
});
found.input = r.iopub.filter(m => m.header.msg_type === 'stream').map(m => m.content.text).join('');

// a second connection sees the first one's execution
const second = manager.connectTo({ model: kernel.model });
const seen = [];
second.iopubMessage.connect((_, msg) => seen.push(msg));
await connected(second);
await second.requestKernelInfo();
r = await run(kernel, "print('shared')");
await new Promise(resolve => setTimeout(resolve, 300));
found.second_saw = types(seen.filter(m => m.parent_header.msg_id === r.iopub[0]?.parent_header.msg_id));
found.second_text = seen.filter(m => m.header.msg_type === 'stream').map(m => m.content.text).join('');
second.dispose();

// interrupt a long sleep
const sleeping = run(kernel, 'import time; time.sleep(30)');
await new Promise(resolve => setTimeout(resolve, 500));
const t0 = Date.now();
await kernel.interrupt();
r = await sleeping;
found.interrupt_ms = Date.now() - t0;
found.interrupt_ename = r.reply?.ename;

// restart: state is gone
await run(kernel, 'x = 1');
await kernel.restart();
r = await run(kernel, 'x');
found.after_restart = r.reply?.ename;

found.listed = (await KernelAPI.listRunning(serverSettings)).map(k => k.id).includes(kernel.id);
await kernel.shutdown();
found.listed_after_shutdown = (await KernelAPI.listRunning(serverSettings)).map(k => k.id).includes(kernel.id);
found.protocols = [...new Set(protocols)];
manager.dispose();
console.log(JSON.stringify(found));
process.exit(0);
