// The launcher: kernelspecs that open new notebooks, proxied apps, running kernels, notebook APIs, files.
import { el, button, shortTime } from './dom.js';
import { notebookUrl } from './notebook.js';
import { FileBrowser } from './files.js';

const REFRESH_MS = 5000;

// Replaces a box's content only when its data changed, and keeps the keyboard focus on the control
// with the same label, so the periodic refresh never pulls a button from under a click or a key.
function refill(box, data, render) {
  const key = JSON.stringify(data);
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  const focused = box.contains(document.activeElement) ? document.activeElement.getAttribute('aria-label') : null;
  box.replaceChildren(...[render()].flat());
  if (focused) [...box.querySelectorAll('[aria-label]')].find(e => e.getAttribute('aria-label') === focused)?.focus();
}

function section(title, id, box, cls = '') {
  return el('section', { class: `panel ${cls}`, 'aria-labelledby': id }, el('h2', { id }, title), box);
}

export async function showLauncher(root, server) {
  const kernelsBox = el('div', { class: 'kernels' });
  const appsBox = el('div', { class: 'cards' });
  const apisBox = el('div', { class: 'apis' });
  const specsBox = el('div', { class: 'cards' });
  const message = el('p', { class: 'message', role: 'status', 'aria-live': 'polite' });
  const fail = error => { message.textContent = error.message || String(error); };
  const files = new FileBrowser(server, {
    onError: fail,
    onNotebook: async dir => {
      await server.specs.ready;
      const specs = server.specs.specs;
      await newNotebook(specs.kernelspecs[specs.default], dir).catch(fail);
    },
  });

  document.title = 'Portico';
  root.replaceChildren(
    el('header', { class: 'bar' }, el('span', { class: 'home' }, 'Portico'), el('h1', {}, 'Launcher'),
      el('span', { class: 'spacer' }), el('span', { class: 'version' }, `v${server.config.version}`),
      server.config.auth === 'cookie' ? el('a', { href: server.url('logout'), class: 'logout' }, 'Log out') : null),
    message,
    el('main', { class: 'launcher' },
      section('New notebook', 'h-new', specsBox),
      section('Apps', 'h-apps', appsBox),
      section('Running kernels', 'h-kernels', kernelsBox, 'wide'),
      section('Notebook APIs', 'h-apis', apisBox),
      section('Files', 'h-files', files.node)));

  async function newNotebook(spec, dir = files.dir) {
    const model = await server.contents.newUntitled({ path: dir, type: 'notebook' });
    const content = { cells: [], metadata: { kernelspec: { name: spec.name, display_name: spec.display_name, language: spec.language } },
      nbformat: 4, nbformat_minor: 5 };
    await server.contents.save(model.path, { type: 'notebook', format: 'json', content });
    location.href = notebookUrl(server, model.path);
  }

  async function showSpecs() {
    await server.specs.ready;
    const { default: def, kernelspecs } = server.specs.specs;
    specsBox.replaceChildren(...Object.values(kernelspecs).map(spec => {
      const logo = spec.resources['logo-64x64'] || spec.resources['logo-32x32'];
      return el('button', { type: 'button', class: 'card', dataset: { kernel: spec.name },
        'aria-label': `New ${spec.display_name} notebook${spec.name === def ? ' (default)' : ''}`,
        onclick: () => newNotebook(spec).catch(fail) },
      logo ? el('img', { src: logo, alt: '', width: 48, height: 48 }) : el('span', { class: 'logo-text', 'aria-hidden': 'true' }, spec.language.slice(0, 2)),
      el('span', {}, spec.display_name));
    }));
  }

  async function showApps() {
    const info = await server.json('server-proxy/servers-info');
    const entries = info.server_processes.filter(p => p.launcher_entry.enabled);
    refill(appsBox, entries.map(p => [p.name, p.state, p.launcher_entry]), () => entries.length ? entries.map(p => el('a', {
      class: 'card', href: server.url(p.launcher_entry.path_info || p.name + '/'), dataset: { app: p.name },
      target: p.new_browser_tab ? '_blank' : undefined, rel: p.new_browser_tab ? 'noopener' : undefined,
    },
    p.launcher_entry.icon_url ? el('img', { src: p.launcher_entry.icon_url, alt: '', width: 48, height: 48 })
      : el('span', { class: 'logo-text', 'aria-hidden': 'true' }, p.name.slice(0, 2)),
    el('span', {}, p.launcher_entry.title || p.name),
    el('small', { class: 'state' }, p.state || ''))) : el('p', { class: 'empty' }, 'No proxied apps are configured.'));
  }

  async function kernelAction(id, action) {
    if (action === 'shutdown') await server.kernels.shutdown(id);
    else await server.json(`api/kernels/${encodeURIComponent(id)}/${action}`, { method: 'POST' });
    await showKernels();
  }

  async function showKernels() {
    const [kernels, sessions] = await Promise.all([server.json('api/kernels'), server.json('api/sessions')]);
    const paths = new Map(sessions.map(s => [s.kernel.id, s.path]));
    refill(kernelsBox, [kernels, sessions], () => !kernels.length ? el('p', { class: 'empty' }, 'No kernels are running.') : el('table', {},
      el('thead', {}, el('tr', {}, ...['Kernel', 'Notebook', 'State', 'Connections', 'Last activity', 'Actions'].map(h => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, ...kernels.map(k => {
        const path = paths.get(k.id);
        return el('tr', { dataset: { kernelId: k.id } },
          el('td', {}, `${k.name} `, el('code', {}, k.id.slice(0, 8))),
          el('td', {}, path ? el('a', { href: notebookUrl(server, path) }, path) : '—'),
          el('td', { class: `state ${k.execution_state}` }, k.execution_state),
          el('td', {}, String(k.connections)),
          el('td', {}, el('time', { datetime: k.last_activity }, shortTime(k.last_activity))),
          el('td', { class: 'actions' },
            button(`Interrupt kernel ${k.id.slice(0, 8)}`, () => kernelAction(k.id, 'interrupt').catch(fail), { icon: 'Interrupt' }),
            button(`Restart kernel ${k.id.slice(0, 8)}`, () => kernelAction(k.id, 'restart').catch(fail), { icon: 'Restart' }),
            button(`Shut down kernel ${k.id.slice(0, 8)}`, () => kernelAction(k.id, 'shutdown').catch(fail), { icon: 'Shut down' })));
      }))));
  }

  async function showApis() {
    const status = await server.json('api/status');
    const mounts = status.notebooks || [];
    if (!mounts.length) { apisBox.replaceChildren(el('p', { class: 'empty' }, 'No notebook is served as an HTTP API (see --notebook).')); return; }
    apisBox.replaceChildren(el('ul', {}, ...mounts.map(m => el('li', {},
      el('code', {}, m.prefix), ` ${m.notebook} — `,
      el('a', { href: m.prefix + '_api/spec/openapi.json', target: '_blank', rel: 'noopener' }, 'OpenAPI spec')))));
  }

  await Promise.all([showSpecs(), showApps(), showKernels(), showApis(), files.refresh()].map(p => p.catch(fail)));
  // Kernels, apps and files change behind the page (other pages, the REST API, the disk): shown within REFRESH_MS.
  const timer = setInterval(() => { showKernels().catch(fail); showApps().catch(() => {}); files.refresh(); }, REFRESH_MS);
  window.portico = { launcher: { refresh: () => Promise.all([showKernels(), showApps(), files.refresh()]), timer } };
}
