// Saving the notebook: the dirty state shown beside its title, save on request and autosave.
export class Saver {
  constructor(notebook) {
    this.notebook = notebook;
    this.dirty = false;
    this.saving = null;
  }

  touch() {
    const nb = this.notebook;
    if (!this.dirty) { this.dirty = true; nb.saveState.textContent = 'Unsaved changes'; nb.title.classList.add('dirty'); }
  }

  async save({ auto = false } = {}) {
    if (this.saving) return this.saving;
    const nb = this.notebook;
    this.dirty = false;  // changes made while the request runs mark it dirty again
    nb.saveState.textContent = 'Saving…';
    this.saving = nb.server.contents.save(nb.path, { type: 'notebook', format: 'json', content: nb.toJSON() })
      .then(() => {
        if (!this.dirty) { nb.saveState.textContent = `${auto ? 'Autosaved' : 'Saved'} ${new Date().toLocaleTimeString()}`; nb.title.classList.remove('dirty'); }
      })
      .catch(async error => {
        this.dirty = true;
        let message = error.message;
        try { message = JSON.parse(await error.response.text()).message; } catch { /* keep the error's own */ }
        nb.saveState.textContent = 'Not saved';
        nb.showBanner(`Saving failed: ${message}`);
      })
      .finally(() => { this.saving = null; });
    return this.saving;
  }
}
