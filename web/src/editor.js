// The code editor: CodeMirror 6, with Python highlighting and the notebook's keys.
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection, highlightSpecialChars,
} from '@codemirror/view';
import { Compartment, EditorState, Prec } from '@codemirror/state';
import { defaultKeymap, history, historyKeymap } from '@codemirror/commands';
import { bracketMatching, defaultHighlightStyle, indentOnInput, indentUnit, syntaxHighlighting } from '@codemirror/language';
import { autocompletion, closeBrackets, closeBracketsKeymap, completionStatus, startCompletion } from '@codemirror/autocomplete';
import { indentMore } from '@codemirror/commands';
import { python } from '@codemirror/lang-python';

// CodeMirror's basicSetup without its word completion (the kernel's is used instead), search panel
// and lint gutter. As in JupyterLab, Tab after a name completes it from the kernel and elsewhere
// indents, Shift+Tab shows the kernel's documentation of what is at the cursor, and Escape leaves
// the editor for command mode, from which Tab moves the focus on: the page works with the keyboard alone.
// Only the selected cell's editor is in the Tab order.
const setup = [
  lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), history(), drawSelection(),
  indentOnInput(), indentUnit.of('    '), syntaxHighlighting(defaultHighlightStyle, { fallback: true }), bracketMatching(),
  closeBrackets(), highlightActiveLine(), keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap]),
];

function languageOf(kind, language) {
  if (kind !== 'code') return [];  // Markdown and raw cells: plain text (Markdown's grammar would bring HTML, CSS and JavaScript's)
  return language === 'python' || !language ? python() : [];
}

// Offsets in the kernel protocol count code points; JavaScript's strings count UTF-16 units.
function toCodePoints(text, offset) { return [...text.slice(0, offset)].length; }
function fromCodePoints(text, points) {
  let offset = 0;
  for (const ch of text) { if (points-- <= 0) break; offset += ch.length; }
  return offset;
}

// The kernel's complete_request, as a CodeMirror completion source.
function kernelCompletion(ask) {
  return async context => {
    if (!ask) return null;
    const code = context.state.doc.toString();
    const reply = await ask(code, toCodePoints(code, context.pos)).catch(() => null);
    if (!reply || reply.status !== 'ok' || !reply.matches.length || context.aborted) return null;
    const types = new Map(((reply.metadata || {})._jupyter_types_experimental || []).map(t => [t.text, t.type]));
    return {
      from: fromCodePoints(code, reply.cursor_start),
      to: fromCodePoints(code, reply.cursor_end),
      options: reply.matches.map(label => ({ label, type: types.get(label) || undefined })),
      validFor: /^[\w.]*$/,
    };
  };
}

// keys: { run, runAndAdvance, runAndInsert, save, onChange, onFocus, label, complete, inspect, escape }
function createView(parent, text, kind, language, keys) {
  const lang = new Compartment();
  const tab = view => {
    const { head, empty } = view.state.selection.main;
    const before = view.state.doc.sliceString(Math.max(0, head - 1), head);
    if (keys.complete && empty && /[\w.]/.test(before)) return startCompletion(view);
    return indentMore(view);
  };
  const inspect = view => {
    if (!keys.inspect) return false;
    const code = view.state.doc.toString();
    keys.inspect(code, toCodePoints(code, view.state.selection.main.head));
    return true;
  };
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: text,
      extensions: [
        Prec.highest(keymap.of([
          { key: 'Shift-Enter', run: () => { keys.runAndAdvance(); return true; } },
          { key: 'Mod-Enter', run: () => { keys.run(); return true; } },
          { key: 'Alt-Enter', run: () => { keys.runAndInsert(); return true; } },
          { key: 'Mod-s', run: () => { keys.save(); return true; }, preventDefault: true },
          { key: 'Tab', run: tab },
          { key: 'Shift-Tab', run: inspect },
          { key: 'Escape', run: v => completionStatus(v.state) === null && keys.escape ? (keys.escape(), true) : false },
        ])),
        // opened only by Tab, so Enter may take its choice at once (no interaction delay)
        autocompletion({ override: [kernelCompletion(keys.complete)], activateOnTyping: false, interactionDelay: 0 }),
        setup,
        lang.of(languageOf(kind, language)),
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ 'aria-label': keys.label }),
        EditorView.updateListener.of(update => {
          if (update.docChanged) keys.onChange();
          if (update.focusChanged && update.view.hasFocus) keys.onFocus();
        }),
      ],
    }),
  });
  return {
    view,
    get text() { return view.state.doc.toString(); },
    set text(value) { view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: value } }); },
    setKind(newKind) { view.dispatch({ effects: lang.reconfigure(languageOf(newKind, language)) }); },
    focus() { view.focus(); },
    destroy() { view.destroy(); },
  };
}

// A cell's editor is made when it comes near the viewport (or is focused): until then the cell
// shows its source as plain text, so a notebook of a thousand cells opens at the cost of the few
// on screen. The handle answers for the text and the kind either way.
const pending = new Map();  // placeholder -> make
const nearby = typeof IntersectionObserver === 'undefined' ? null : new IntersectionObserver(entries => {
  for (const entry of entries) if (entry.isIntersecting) pending.get(entry.target)?.();
}, { rootMargin: '1500px 0px' });

export function createEditor(parent, text, kind, language, keys) {
  let editor = null;
  const state = { text, kind };
  let tabbable = false;
  const placeholder = document.createElement('pre');
  placeholder.className = 'cm-placeholder';
  placeholder.tabIndex = -1;
  placeholder.setAttribute('aria-label', keys.label);
  placeholder.textContent = text || ' ';
  const make = () => {
    if (editor) return editor;
    pending.delete(placeholder);
    nearby?.unobserve(placeholder);
    editor = createView(parent, state.text, state.kind, language, keys);
    editor.view.contentDOM.tabIndex = tabbable ? 0 : -1;
    placeholder.replaceWith(editor.view.dom);
    return editor;
  };
  placeholder.addEventListener('focus', () => make().focus());
  placeholder.addEventListener('mousedown', event => { event.preventDefault(); make().focus(); });
  parent.append(placeholder);
  pending.set(placeholder, make);
  if (nearby) nearby.observe(placeholder); else make();
  return {
    get view() { return make().view; },
    get text() { return editor ? editor.text : state.text; },
    set text(value) { if (editor) editor.text = value; else { state.text = value; placeholder.textContent = value || ' '; } },
    setKind(newKind) { if (editor) editor.setKind(newKind); else state.kind = newKind; },
    focus() { make().focus(); },
    // Only the selected cell's editor is a Tab stop: Tab then goes from the toolbar to the cell one
    // works on and on past it, never through every editor (command mode moves between cells).
    setTabbable(value) {
      tabbable = value;
      (editor ? editor.view.contentDOM : placeholder).tabIndex = value ? 0 : -1;
    },
    destroy() { pending.delete(placeholder); nearby?.unobserve(placeholder); editor?.destroy(); },
  };
}
