// The code editor: CodeMirror 6, with Python highlighting and the notebook's keys.
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection, highlightSpecialChars,
} from '@codemirror/view';
import { Compartment, EditorState, Prec } from '@codemirror/state';
import { defaultKeymap, history, historyKeymap } from '@codemirror/commands';
import { bracketMatching, defaultHighlightStyle, indentOnInput, indentUnit, syntaxHighlighting } from '@codemirror/language';
import { closeBrackets, closeBracketsKeymap } from '@codemirror/autocomplete';
import { python } from '@codemirror/lang-python';

// CodeMirror's basicSetup without its word completion (a kernel knows better), search panel and
// lint gutter. Tab is left to move the focus, so the page works with the keyboard alone.
const setup = [
  lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), history(), drawSelection(),
  indentOnInput(), indentUnit.of('    '), syntaxHighlighting(defaultHighlightStyle, { fallback: true }), bracketMatching(),
  closeBrackets(), highlightActiveLine(), keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap]),
];

function languageOf(kind, language) {
  if (kind !== 'code') return [];  // Markdown and raw cells: plain text (Markdown's grammar would bring HTML, CSS and JavaScript's)
  return language === 'python' || !language ? python() : [];
}

// keys: { run, runAndAdvance, runAndInsert, save, onChange, onFocus, label }
function createView(parent, text, kind, language, keys) {
  const lang = new Compartment();
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
        ])),
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
  const placeholder = document.createElement('pre');
  placeholder.className = 'cm-placeholder';
  placeholder.tabIndex = 0;
  placeholder.setAttribute('aria-label', keys.label);
  placeholder.textContent = text || ' ';
  const make = () => {
    if (editor) return editor;
    pending.delete(placeholder);
    nearby?.unobserve(placeholder);
    editor = createView(parent, state.text, state.kind, language, keys);
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
    destroy() { pending.delete(placeholder); nearby?.unobserve(placeholder); editor?.destroy(); },
  };
}
