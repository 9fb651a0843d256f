// A small element builder, so views read as the trees they make.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// A button with a visible text or, for an icon button, an aria-label and a tooltip.
export function button(label, onclick, { icon, cls, disabled, shortcut } = {}) {
  const title = shortcut ? `${label} (${shortcut})` : label;
  return el('button', { type: 'button', class: cls, onclick, disabled, title, 'aria-label': icon ? label : undefined,
    'aria-keyshortcuts': shortcut }, icon || label);
}

export function relativeTime(iso) {
  if (!iso) return '';
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}

// Paths in URLs: each segment encoded, the slashes kept.
export function encodePath(path) {
  return path.split('/').map(encodeURIComponent).join('/');
}

// A time of today as its time of day, an older one with its date.
export function shortTime(iso) {
  const when = new Date(iso);
  return when.toDateString() === new Date().toDateString() ? when.toLocaleTimeString() : when.toLocaleString();
}
