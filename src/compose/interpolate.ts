// Variable interpolation, as the compose-spec "Interpolation" section and compose-go's
// template package define it: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
// ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}, nested templates inside the
// default/alternative/error text, and $$ for a literal $. A lone "$" is an error, as in
// Compose ("you may need to escape any $ with another $"). Applied to values, not keys.
import { ComposeError, type KeyPath } from './errors';
import type { Node } from './node';

export type Lookup = (name: string) => string | undefined;

/** Raised by substitute(); the tree walker turns it into a ComposeError with a position. */
export class TemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateError';
  }
}

const NAME = /^[_a-zA-Z][_a-zA-Z0-9]*/;
const OPERATORS = [':-', ':?', ':+', '-', '?', '+'] as const;
type Operator = (typeof OPERATORS)[number];

function invalid(template: string): TemplateError {
  return new TemplateError(`invalid interpolation format ${JSON.stringify(template)}: you may need to escape any $ with another $`);
}

/** Index of the "}" closing the "${" at `start`, counting nested "${". */
function closingBrace(s: string, start: number): number {
  let depth = 0;
  for (let j = start; j < s.length; j++) {
    if (s.startsWith('${', j)) {
      depth++;
      j++;
    } else if (s[j] === '}') {
      depth--;
      if (depth === 0) return j;
    }
  }
  return -1;
}

export interface SubstituteContext {
  lookup: Lookup;
  /** Called for a plain ${VAR} or $VAR that is not set (Compose warns and uses ""). */
  onUnset?: (name: string) => void;
}

export function substitute(template: string, ctx: SubstituteContext): string {
  let out = '';
  let i = 0;
  while (i < template.length) {
    const c = template[i];
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    const next = template[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
    } else if (next === '{') {
      const close = closingBrace(template, i);
      if (close < 0) throw invalid(template);
      out += braced(template.slice(i + 2, close), template, ctx);
      i = close + 1;
    } else {
      const name = NAME.exec(template.slice(i + 1))?.[0];
      if (!name) throw invalid(template);
      out += plainValue(name, ctx);
      i += 1 + name.length;
    }
  }
  return out;
}

function plainValue(name: string, ctx: SubstituteContext): string {
  const value = ctx.lookup(name);
  if (value === undefined) ctx.onUnset?.(name);
  return value ?? '';
}

function braced(inner: string, template: string, ctx: SubstituteContext): string {
  const name = NAME.exec(inner)?.[0];
  if (!name) throw invalid(template);
  const rest = inner.slice(name.length);
  if (rest === '') return plainValue(name, ctx);
  const op = OPERATORS.find((o) => rest.startsWith(o));
  if (!op) throw invalid(template);
  return applyOperator(op, name, rest.slice(op.length), ctx);
}

// The argument is interpolated only when it is used, as a POSIX shell does.
function applyOperator(op: Operator, name: string, arg: string, ctx: SubstituteContext): string {
  const value = ctx.lookup(name);
  const set = value !== undefined;
  const nonEmpty = set && value !== '';
  switch (op) {
    case ':-':
      return nonEmpty ? value : substitute(arg, ctx);
    case '-':
      return set ? value : substitute(arg, ctx);
    case ':+':
      return nonEmpty ? substitute(arg, ctx) : '';
    case '+':
      return set ? substitute(arg, ctx) : '';
    case ':?':
    case '?':
      if (op === ':?' ? nonEmpty : set) return value as string;
      throw new TemplateError(`required variable ${name} is missing a value: ${substitute(arg, ctx)}`);
  }
}

/**
 * Interpolates every string value of a tree in place. Keys are left alone, as Compose
 * does. `onUnset` receives the path of the value that used an unset variable.
 */
export function interpolateTree(
  node: Node,
  path: KeyPath,
  lookup: Lookup,
  onUnset: (name: string, node: Node, path: KeyPath) => void,
): void {
  switch (node.kind) {
    case 'scalar':
      if (typeof node.value === 'string' && node.value.includes('$')) {
        node.value = substituteAt(node, path, lookup, onUnset);
        node.source = node.value;
      }
      return;
    case 'seq':
      node.items.forEach((item, i) => interpolateTree(item, [...path, i], lookup, onUnset));
      return;
    case 'map':
      for (const entry of node.entries.values()) interpolateTree(entry.value, [...path, entry.key], lookup, onUnset);
      return;
  }
}

function substituteAt(
  node: Node & { kind: 'scalar' },
  path: KeyPath,
  lookup: Lookup,
  onUnset: (name: string, node: Node, path: KeyPath) => void,
): string {
  try {
    return substitute(node.value as string, { lookup, onUnset: (name) => onUnset(name, node, path) });
  } catch (err) {
    if (err instanceof TemplateError) throw new ComposeError(err.message, { pos: node.pos, path, cause: err });
    throw err;
  }
}
