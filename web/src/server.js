// The REST and WebSocket client: @jupyterlab/services, authenticated by the login cookie.
// Its requests carry the _xsrf cookie's value in X-XSRFToken by themselves; no token lives in the page.
import {
  ContentsManager, KernelManager, KernelSpecManager, ServerConnection, SessionManager,
} from '@jupyterlab/services';

// Portico's output journal: the kernel WebSocket is opened with ?since=now, so every iopub message
// carries its number (metadata.portico_seq), and reopened after a drop with ?since=<last number
// handled>, so nothing sent meanwhile, or lost in flight, is missed. journal.seen() drops repeats.
export const journal = {
  last: null,
  seen(msg) {
    const seq = msg.metadata && msg.metadata.portico_seq;
    if (typeof seq !== 'number') return false;
    if (this.last !== null && seq <= this.last) return true;
    this.last = seq;
    return false;
  },
};

class JournalWebSocket extends WebSocket {
  constructor(url, protocols) {
    const withSince = new URL(url);
    if (/\/api\/kernels\/[^/]+\/channels$/.test(withSince.pathname)) {
      withSince.searchParams.set('since', journal.last === null ? 'now' : String(journal.last));
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
