// The argument shapes of Dockerfile instructions before substitution, ported from BuildKit's
// line parsers (moby/buildkit frontend/dockerfile/parser/line_parsers.go and
// split_command.go): builder flags, quote-aware words for ENV/LABEL/ARG, whitespace lists,
// and the JSON array form with Docker's fallback to the shell form when it is not JSON.
import { LocalSyntaxError } from './errors';

/** Go's regexp `[\t\v\f\r ]+`, the separator BuildKit splits plain lists on. */
const WHITESPACE_RUN = /[\t\v\f\r ]+/;

/** "RUN --mount=x echo hi" → { cmd: "RUN", flags: ["--mount=x"], rest: "echo hi" }. */
export function splitCommand(line: string): { cmd: string; flags: string[]; rest: string } {
  const trimmed = line.trim();
  const match = WHITESPACE_RUN.exec(trimmed);
  if (!match) return { cmd: trimmed, flags: [], rest: '' };
  const cmd = trimmed.slice(0, match.index);
  const { rest, flags } = extractBuilderFlags(trimmed.slice(match.index + match[0].length));
  return { cmd, flags, rest: rest.trim() };
}

/**
 * Leading `--name[=value]` words, with quotes and backslash escapes removed; a bare `--`
 * ends them. Flags are only recognised before the first word that is not one, so
 * `RUN echo --x` keeps `--x` in the command.
 */
export function extractBuilderFlags(line: string): { rest: string; flags: string[] } {
  const flags: string[] = [];
  let pos = 0;
  for (;;) {
    while (pos < line.length && /\s/.test(line[pos] as string)) pos++;
    if (pos >= line.length) return { rest: '', flags };
    if (!line.startsWith('--', pos)) return { rest: line.slice(pos), flags };
    const { word, end, quoted } = readFlagWord(line, pos);
    if (word === '--' && !quoted) return { rest: line.slice(end), flags };
    if (word.length > 0 || quoted) flags.push(word);
    pos = end;
  }
}

function readFlagWord(line: string, start: number): { word: string; end: number; quoted: boolean } {
  let word = '';
  let quote = '';
  let quoted = false;
  let pos = start;
  for (; pos < line.length; pos++) {
    let ch = line[pos] as string;
    if (quote === '' && /\s/.test(ch)) break;
    if (quote === '' && (ch === "'" || ch === '"')) {
      quote = ch;
      quoted = true;
      continue;
    }
    if (quote !== '' && ch === quote) {
      quote = '';
      continue;
    }
    if (ch === '\\') {
      if (pos + 1 === line.length) continue;
      pos++;
      ch = line[pos] as string;
    }
    word += ch;
  }
  return { word, end: pos, quoted };
}

/**
 * Quote-aware words for ENV, LABEL and ARG: whitespace separates words outside quotes;
 * quotes and escapes are kept (substitution removes them later, as Docker does).
 */
export function parseWords(rest: string, escape: string): string[] {
  const words: string[] = [];
  const chars = Array.from(rest);
  let word = '';
  let quote = '';
  let inWord = false;
  let blankOk = false;
  const flush = () => {
    if (blankOk || word.length > 0) words.push(word);
    word = '';
    blankOk = false;
    inWord = false;
  };
  for (let i = 0; i < chars.length; i++) {
    let ch = chars[i] as string;
    if (!inWord && quote === '') {
      if (/\s/u.test(ch)) continue;
      inWord = true;
    }
    if (quote === '') {
      if (/\s/u.test(ch)) {
        flush();
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOk = true;
      } else if (ch === escape) {
        if (i + 1 === chars.length) continue;
        word += ch;
        ch = chars[++i] as string;
      }
      word += ch;
      continue;
    }
    if (ch === quote) quote = '';
    else if (ch === escape && quote !== "'") {
      if (i + 1 === chars.length) continue;
      word += ch;
      ch = chars[++i] as string;
    }
    word += ch;
  }
  if (inWord || quote !== '') flush();
  return words;
}

/** Split on runs of whitespace, as BuildKit's parseStringsWhitespaceDelimited. */
export function splitWhitespace(rest: string): string[] {
  return rest === '' ? [] : rest.split(WHITESPACE_RUN).filter((w) => w !== '');
}

export type JsonAttempt = { json: true; values: string[] } | { json: false };

/**
 * The JSON array form. Text that is not a JSON array is the shell form (Docker falls back
 * silently, e.g. for `CMD [not json`); a JSON array with a non-string element is an error.
 */
export function tryJsonArray(rest: string): JsonAttempt {
  const text = rest.trimStart();
  if (!text.startsWith('[')) return { json: false };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    if (err instanceof SyntaxError) return { json: false };
    throw err;
  }
  if (!Array.isArray(parsed)) return { json: false };
  if (!parsed.every((v): v is string => typeof v === 'string')) {
    throw new LocalSyntaxError('when using JSON array syntax, arrays must be comprised of strings only');
  }
  return { json: true, values: parsed };
}

/** A parsed `--name[=value]` builder flag. */
export interface Flag {
  name: string;
  value?: string;
}

export function parseFlag(raw: string): Flag {
  const body = raw.startsWith('--') ? raw.slice(2) : raw;
  const eq = body.indexOf('=');
  return eq < 0 ? { name: body } : { name: body.slice(0, eq), value: body.slice(eq + 1) };
}

/** What an instruction accepts: flag name → string (once), string[] (repeatable) or bool. */
export type FlagSpec = Record<string, 'string' | 'strings' | 'bool'>;

export type FlagValues = Record<string, string | string[] | boolean | undefined>;

/** BuildKit's BFlags: unknown flags, missing values and duplicates are errors. */
export function parseFlags(cmd: string, raws: readonly string[], spec: FlagSpec): FlagValues {
  const values: FlagValues = {};
  for (const raw of raws) {
    const { name, value } = parseFlag(raw);
    const type = spec[name];
    if (type === undefined) throw new LocalSyntaxError(`unknown flag: --${name} (${cmd} accepts ${describeFlags(spec)})`);
    if (type === 'bool') {
      values[name] = parseBoolFlag(name, value);
    } else {
      if (value === undefined) throw new LocalSyntaxError(`missing a value on flag: --${name}`);
      if (type === 'strings') values[name] = [...((values[name] as string[] | undefined) ?? []), value];
      else if (values[name] !== undefined) throw new LocalSyntaxError(`duplicate flag specified: --${name}`);
      else values[name] = value;
    }
  }
  return values;
}

function parseBoolFlag(name: string, value: string | undefined): boolean {
  if (value === undefined || value.toLowerCase() === 'true') return true;
  if (value.toLowerCase() === 'false') return false;
  throw new LocalSyntaxError(`expecting boolean value for flag --${name}, not: ${value}`);
}

function describeFlags(spec: FlagSpec): string {
  const names = Object.keys(spec);
  return names.length === 0 ? 'no flags' : names.map((n) => `--${n}`).join(', ');
}
