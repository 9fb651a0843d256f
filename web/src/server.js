// The REST and WebSocket client: @jupyterlab/services, authenticated by the login cookie.
// Its requests carry the _xsrf cookie's value in X-XSRFToken by themselves; no token lives in the page.
import {
  ContentsManager, KernelManager, KernelSpecManager, ServerConnection, SessionManager,
} from '@jupyterlab/services';

// Portico's output journal: a kernel WebSocket is opened with ?since=now, so every iopub message
// carries its number (metadata.portico_seq), and reopened after a drop with ?since=<last number
// handled>, so nothing sent meanwhile, or lost in flight, is missed. journal.seen() drops repeats.
// Numbers belong to one kernel's journal: the position is kept per kernel id.
const CHANNELS = /\/api\/kernels\/([^/]+)\/channels$/;

export const journal = {
  last: new Map(),  // kernel id -> the last number handled
  seen(kernelId, msg) {
    const seq = msg.metadata && msg.metadata.portico_seq;
    if (typeof seq !== 'number') return false;
    const last = this.last.get(kernelId);
    if (last !== undefined && seq <= last) return true;
    this.last.set(kernelId, seq);
    return false;
  },
};

class JournalWebSocket extends WebSocket {
  constructor(url, protocols) {
    const withSince = new URL(url);
    const match = CHANNELS.exec(withSince.pathname);
    if (match) {
      const last = journal.last.get(decodeURIComponent(match[1]));
      withSince.searchParams.set('since', last === undefined ? 'now' : String(last));
    }
    super(withSince.href, protocols);
  }
}

export function connect(config) {
  const base = new URL(config.baseUrl, window.location.href);
  const wsUrl = (base.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + base.host + base.pathname;
  const serverSettings = ServerConnection.makeSettings({
    baseUrl: base.href, wsUrl, token: '', appendToken: false, init: { credentials: 'same-origin' },
    WebSocket: JournalWebSocket,
  });
  const kernels = new KernelManager({ serverSettings });
  return {
    config,
    serverSettings,
    kernels,
    sessions: new SessionManager({ kernelManager: kernels, serverSettings }),
    specs: new KernelSpecManager({ serverSettings }),
    contents: new ContentsManager({ serverSettings }),
    url: path => new URL(path, base).href,
    async json(path, init = {}) {
      const response = await ServerConnection.makeRequest(new URL(path, base).href, init, serverSettings);
      if (!response.ok) throw await ServerConnection.ResponseError.create(response);
      return response.status === 204 ? null : response.json();
    },
  };
}
