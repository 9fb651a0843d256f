// Saving the notebook: the dirty state shown beside its title, save on request and autosave.
// A save never clobbers: it first asks the file's last-modified time, and if the file changed on
// disk since the page loaded or last saved it (another page, an editor, a git pull), the page
// says so and saves only when told to overwrite (or reloads the file instead), as JupyterLab does.
import { el, button } from './dom.js';

export class Saver {
  constructor(notebook, lastModified) {
    this.notebook = notebook;
    this.dirty = false;
    this.saving = null;
    this.lastModified = lastModified;  // the file's, as this page last read or wrote it
    this.conflict = false;
  }

  touch() {
    const nb = this.notebook;
    if (!this.dirty) { this.dirty = true; nb.saveState.textContent = 'Unsaved changes'; nb.title.classList.add('dirty'); }
  }

  async save({ auto = false, overwrite = false } = {}) {
    if (this.saving) return this.saving;
    if (this.conflict && !overwrite) { this.showConflict(); return null; }  // the person chooses first
    this.saving = this.write(auto, overwrite).finally(() => { this.saving = null; });
    return this.saving;
  }

  async write(auto, overwrite) {
    const nb = this.notebook;
    const wasDirty = this.dirty;
    this.dirty = false;  // changes made while the request runs mark it dirty again
    nb.saveState.textContent = 'Saving…';
    try {
      if (!overwrite && await this.changedOnDisk()) {
        this.dirty = this.dirty || wasDirty;
        this.showConflict();
        return;
      }
      await nb.keepWidgetState();
      const saved = await nb.server.contents.save(nb.path, { type: 'notebook', format: 'json', content: nb.toJSON() });
      this.lastModified = saved.last_modified;
      if (!auto) await nb.server.contents.createCheckpoint(nb.path);  // as JupyterLab: a save you ask for is a checkpoint
      if (this.conflict) { this.conflict = false; nb.banner.hidden = true; }
      if (!this.dirty) { nb.saveState.textContent = `${auto ? 'Autosaved' : 'Saved'} ${new Date().toLocaleTimeString()}`; nb.title.classList.remove('dirty'); }
    } catch (error) {
      this.dirty = true;
      let message = error.message;
      try { message = JSON.parse(await error.response.text()).message; } catch { /* keep the error's own */ }
      nb.saveState.textContent = 'Not saved';
      nb.showBanner(`Saving failed: ${message}`);
    }
  }

  async changedOnDisk() {
    if (!this.lastModified) return false;
    let disk;
    try {
      disk = await this.notebook.server.contents.get(this.notebook.path, { content: false });
    } catch (error) {
      if (error.response && error.response.status === 404) return false;  // deleted meanwhile: saving makes it again
      throw error;
    }
    return Date.parse(disk.last_modified) > Date.parse(this.lastModified);
  }

  // The file's checkpoint (one per file, as Jupyter Server keeps), listed in the banner, and
  // reverting to it: the file becomes the checkpoint, and the page reloads it.
  async showCheckpoints() {
    const nb = this.notebook;
    const checkpoints = await nb.server.contents.listCheckpoints(nb.path);
    clearTimeout(nb.bannerTimer);
    const items = checkpoints.map(checkpoint => el('li', {},
      `Checkpoint of ${new Date(checkpoint.last_modified).toLocaleString()} `,
      button('Revert to this checkpoint', () => this.revert(checkpoint.id), { cls: 'revert' })));
    nb.banner.replaceChildren(
      el('span', {}, checkpoints.length ? 'Checkpoints (saving with Ctrl+S makes one):' : 'No checkpoint yet: saving with Ctrl+S makes one.'),
      el('ul', { class: 'checkpoints' }, items),
      button('Close', () => { nb.banner.hidden = true; }));
    nb.banner.hidden = false;
  }

  async revert(id) {
    const nb = this.notebook;
    await nb.server.contents.restoreCheckpoint(nb.path, id);
    this.dirty = false;  // what was not saved is given up: that is what reverting asks
    window.location.reload();
  }

  showConflict() {
    const nb = this.notebook;
    this.conflict = true;
    nb.saveState.textContent = 'Not saved: the file changed on disk';
    clearTimeout(nb.bannerTimer);
    nb.banner.replaceChildren(
      el('span', {}, 'This notebook changed on disk after this page opened or last saved it. Saving now would overwrite those changes. '),
      button('Overwrite', () => this.save({ overwrite: true }), { cls: 'conflict-overwrite' }),
      ' ',
      button('Reload from disk', () => { this.dirty = false; window.location.reload(); }, { cls: 'conflict-reload' }),
    );
    nb.banner.hidden = false;
  }
}
