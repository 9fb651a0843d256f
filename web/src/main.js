// Entry point: reads the settings the server put in the page and shows the launcher or a notebook.
import { connect } from './server.js';
import { showLauncher } from './launcher.js';
import { showNotebook } from './notebook.js';
import { el } from './dom.js';

const config = JSON.parse(document.getElementById('portico-config').textContent);
const server = connect(config);
const root = document.getElementById('app');

const view = config.view === 'notebook' ? showNotebook(root, server, config.path) : showLauncher(root, server);
view.catch(error => {
  console.error(error);
  root.replaceChildren(el('main', { class: 'fatal' }, el('h1', {}, 'Portico'),
    el('p', { role: 'alert' }, `This page could not be shown: ${error.message || error}`),
    el('p', {}, el('a', { href: config.baseUrl }, 'Back to the launcher'))));
});
