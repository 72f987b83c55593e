// Typed readers over position-carrying nodes. Each one either returns a value of the
// type Compose's schema allows or throws a ComposeError naming file:line:col and key path.
// After interpolation every value may be a string ("${PORT}" → "8080"), so numeric and
// boolean readers accept their string spellings, as compose-go casts them.
import { durationProblem } from '../api/duration';
import { InvalidByteSizeError, parseBytes } from '../api/quantity';
import { ComposeError, type KeyPath } from './errors';
import type { MapNode, Node, ScalarNode, SeqNode } from './node';

export function fail(node: Node, path: KeyPath, message: string): never {
  throw new ComposeError(message, { pos: node.pos, path });
}

function describe(node: Node): string {
  if (node.kind === 'map') return 'a mapping';
  if (node.kind === 'seq') return 'a sequence';
  return node.value === null ? 'null' : JSON.stringify(node.value);
}

export function asMap(node: Node, path: KeyPath): MapNode {
  if (node.kind !== 'map') fail(node, path, `must be a mapping, got ${describe(node)}`);
  return node;
}

export function asSeq(node: Node, path: KeyPath): SeqNode {
  if (node.kind !== 'seq') fail(node, path, `must be a list, got ${describe(node)}`);
  return node;
}

export function asScalar(node: Node, path: KeyPath): ScalarNode {
  if (node.kind !== 'scalar') fail(node, path, `must be a scalar value, got ${describe(node)}`);
  return node;
}

export function readString(node: Node, path: KeyPath): string {
  if (node.kind !== 'scalar' || typeof node.value !== 'string') fail(node, path, `must be a string, got ${describe(node)}`);
  return node.value;
}

/** Strings, numbers and booleans as text: environment values, labels, driver options. */
export function readText(node: Node, path: KeyPath): string {
  const s = asScalar(node, path);
  if (s.value === null) fail(node, path, 'must not be null');
  return String(s.value);
}

export function readInt(node: Node, path: KeyPath, min = Number.MIN_SAFE_INTEGER): number {
  const s = asScalar(node, path);
  const n = typeof s.value === 'number' ? s.value : typeof s.value === 'string' && /^[-+]?\d+$/.test(s.value.trim()) ? Number(s.value) : NaN;
  if (!Number.isSafeInteger(n)) fail(node, path, `must be an integer, got ${describe(node)}`);
  if (n < min) fail(node, path, `must be at least ${min}, got ${n}`);
  return n;
}

export function readNumber(node: Node, path: KeyPath): number {
  const s = asScalar(node, path);
  const n = typeof s.value === 'number' ? s.value : typeof s.value === 'string' && /^[-+]?(\d+\.?\d*|\.\d+)$/.test(s.value.trim()) ? Number(s.value) : NaN;
  if (!Number.isFinite(n)) fail(node, path, `must be a number, got ${describe(node)}`);
  return n;
}

// compose-go accepts YAML 1.1 spellings for booleans written as strings.
const TRUE_WORDS = new Set(['true', 'yes', 'y', 'on', '1']);
const FALSE_WORDS = new Set(['false', 'no', 'n', 'off', '0']);

export function readBool(node: Node, path: KeyPath): boolean {
  const s = asScalar(node, path);
  if (typeof s.value === 'boolean') return s.value;
  const word = typeof s.value === 'string' ? s.value.trim().toLowerCase() : '';
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  fail(node, path, `must be a boolean, got ${describe(node)}`);
}

/** A string or a list of strings (compose-spec "string_or_list"). */
export function readStringList(node: Node, path: KeyPath): string[] {
  if (node.kind === 'scalar') return [readString(node, path)];
  return asSeq(node, path).items.map((item, i) => readString(item, [...path, i]));
}

export function readDuration(node: Node, path: KeyPath): string {
  const s = readString(node, path).trim();
  const problem = durationProblem(s);
  if (problem !== undefined) fail(node, path, `invalid duration ${JSON.stringify(s)}: ${problem} (expected Go duration syntax like "1m30s" or "500ms")`);
  return s;
}

/** A byte size: bytes as a number, or a docker/go-units size such as "512m" or "1.5g". */
export function readBytes(node: Node, path: KeyPath): number {
  const s = asScalar(node, path);
  if (typeof s.value !== 'number' && typeof s.value !== 'string') fail(node, path, `must be a size, got ${describe(node)}`);
  try {
    return parseBytes(s.value);
  } catch (err) {
    if (err instanceof InvalidByteSizeError) fail(node, path, err.message);
    throw err;
  }
}

/**
 * A file mode, "in octal" as the compose-spec says. YAML 1.2 reads `1777` or `0755` as
 * decimal numbers, so the source text decides: octal digits are octal.
 */
export function readFileMode(node: Node, path: KeyPath): number {
  const s = asScalar(node, path);
  const text = (typeof s.value === 'string' ? s.value : s.source).trim();
  let mode: number;
  if (/^0o[0-7]+$/i.test(text)) mode = parseInt(text.slice(2), 8);
  else if (/^[0-7]+$/.test(text)) mode = parseInt(text, 8);
  else if (typeof s.value === 'number' && Number.isSafeInteger(s.value)) mode = s.value;
  else fail(node, path, `invalid file mode ${describe(node)}`);
  if (mode < 0 || mode > 0o7777) fail(node, path, `invalid file mode ${describe(node)}`);
  return mode;
}

/** environment, labels, sysctls, build.args: canonical lists of "KEY=value" (see canonical.ts). */
export function asKeyValueList(node: Node, path: KeyPath): SeqNode {
  if (node.kind !== 'seq') fail(node, path, `must be a mapping or a list of "KEY=value", got ${describe(node)}`);
  return node;
}

/** "KEY=VALUE" → ["KEY", "VALUE"]; "KEY" → ["KEY", undefined]. */
export function splitKeyValue(item: string): [string, string | undefined] {
  const i = item.indexOf('=');
  return i < 0 ? [item, undefined] : [item.slice(0, i), item.slice(i + 1)];
}
