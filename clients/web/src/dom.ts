// A few DOM helpers in place of a framework. Everything the server sends goes into the page as
// text (`textContent`), never as HTML, so a message cannot inject markup.

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = { [name: string]: string | number | boolean | null | undefined | EventListener };

/**
 * Creates an element: `on<event>` attributes become listeners (added in code, so the CSP needs
 * no inline handlers), `true` makes a bare attribute, `false`/`null`/`undefined` leave it out.
 */
export function h(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = String(value);
    else if (name === 'value') (el as HTMLInputElement).value = String(value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

/**
 * Brings `container`'s children in line with `items`, keyed: an item whose `version` is
 * unchanged keeps its element (so a list of hundreds of messages is not rebuilt for one
 * reaction, and the text a user is typing into an edit box survives other messages' updates).
 */
export function syncList<T>(
  container: HTMLElement,
  items: T[],
  key: (item: T) => string,
  version: (item: T) => string,
  render: (item: T) => HTMLElement,
): void {
  const old = new Map<string, HTMLElement>();
  for (const child of Array.from(container.children) as HTMLElement[]) {
    if (child.dataset.key) old.set(child.dataset.key, child);
  }
  const wanted: HTMLElement[] = [];
  for (const item of items) {
    const k = key(item);
    const v = version(item);
    let el = old.get(k);
    if (!el || el.dataset.version !== v) {
      el = render(item);
      el.dataset.key = k;
      el.dataset.version = v;
    }
    wanted.push(el);
  }
  // Moves only what is out of place: appending to a long list, or replacing one element of it,
  // touches one node.
  const keep = new Set<Element>(wanted);
  let at = container.firstElementChild;
  for (const el of wanted) {
    while (at && !keep.has(at)) {
      const next = at.nextElementSibling;
      at.remove();
      at = next;
    }
    if (el === at) at = at.nextElementSibling;
    else container.insertBefore(el, at);
  }
  while (at) {
    const next = at.nextElementSibling;
    at.remove();
    at = next;
  }
}

export function time(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}
