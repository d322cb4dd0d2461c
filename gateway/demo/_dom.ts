/**
 * The few DOM types the demo page uses. The page is type-checked with Deno's own libraries
 * rather than `lib.dom` (a `/// <reference lib="dom" />` would apply to the whole
 * repository's `deno check` and clash with Deno's stream types), so it reaches the browser
 * globals through {@linkcode browser}.
 * @module
 */

/** A DOM node. */
export interface DomNode {
  readonly nodeType: number;
}

/** An element, with the members the page uses. */
export interface DomElement extends DomNode, EventTarget {
  className: string;
  hidden: boolean;
  textContent: string | null;
  scrollTop: number;
  readonly dataset: Record<string, string | undefined>;
  readonly style: { setProperty(name: string, value: string): void };
  setAttribute(name: string, value: string): void;
  append(...nodes: Array<DomNode | string>): void;
  replaceChildren(...nodes: Array<DomNode | string>): void;
  querySelectorAll(selector: string): Iterable<DomElement>;
  focus(): void;
}

/** A button. */
export interface DomButton extends DomElement {
  disabled: boolean;
  type: string;
}

/** A form. */
export type DomForm = DomElement;

/** An input. */
export interface DomInput extends DomElement {
  value: string;
}

/** A textarea. */
export interface DomTextArea extends DomInput {
  readOnly: boolean;
  readonly selectionStart: number;
  readonly selectionEnd: number;
  setSelectionRange(start: number, end: number): void;
}

/** The document. */
export interface DomDocument {
  getElementById(id: string): DomElement | null;
  createElement(tag: string): DomElement;
  createTextNode(text: string): DomNode;
  readonly activeElement: DomElement | null;
}

/** The browser globals the page uses. */
export interface BrowserGlobals {
  readonly document: DomDocument;
  readonly history: { replaceState(data: unknown, unused: string, url?: string): void };
  readonly location: {
    readonly origin: string;
    readonly protocol: string;
    readonly host: string;
    readonly hostname: string;
    readonly search: string;
    readonly hash: string;
  };
  requestAnimationFrame(callback: (time: number) => void): number;
}

/** The page's window. */
export const browser: BrowserGlobals = globalThis as unknown as BrowserGlobals;
