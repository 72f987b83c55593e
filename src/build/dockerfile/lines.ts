// From text to raw instructions: parser directives, comments, line continuations and
// here-documents, following BuildKit's parser (moby/buildkit
// frontend/dockerfile/parser/parser.go) line for line where behaviour is observable:
// - directives (`# syntax=`, `# escape=`, `# check=`) count only before any instruction,
//   comment or blank line, and each may appear once;
// - a comment is a line whose first non-blank character is `#`; elsewhere `#` is literal;
// - the escape character at the end of a line continues it; comment lines and empty lines
//   inside a continuation are skipped (the latter with a warning, as Docker prints);
// - a RUN/COPY/ADD (also behind ONBUILD) in shell form may name heredocs (`<<EOF`), whose
//   bodies follow the instruction, verbatim, up to their delimiter lines.
import { DockerfileError, LocalSyntaxError } from './errors';
import { processWords } from './shell-lex';
import type { Directives, Heredoc } from './types';
import { splitCommand, tryJsonArray } from './words';

export interface RawInstruction {
  /** The instruction name as written. */
  cmd: string;
  flags: string[];
  rest: string;
  line: number;
  endLine: number;
  original: string;
  heredocs: Heredoc[];
}

export interface ScanResult {
  directives: Directives;
  instructions: RawInstruction[];
  warnings: string[];
}

const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const KNOWN_DIRECTIVES = new Set(['syntax', 'escape', 'check']);
const HEREDOC_WORD = /^(\d*)<<(-?)([^<]*)$/;
const HEREDOC_COMMANDS = new Set(['run', 'copy', 'add']);

class DirectiveReader {
  done = false;
  readonly seen = new Set<string>();
  readonly directives: Directives = { escape: '\\' };

  /** Looks at a line with leading blanks removed; returns an error message or undefined. */
  consider(line: string): string | undefined {
    if (this.done) return undefined;
    const match = DIRECTIVE.exec(line);
    const key = match?.[1]?.toLowerCase();
    if (!match || key === undefined || !KNOWN_DIRECTIVES.has(key)) {
      this.done = true;
      return undefined;
    }
    if (this.seen.has(key)) return `only one ${key} parser directive can be used`;
    this.seen.add(key);
    const value = match[2] as string;
    if (key === 'escape') {
      if (value !== '\\' && value !== '`') return `invalid escape token '${value}' does not match \` or \\`;
      this.directives.escape = value;
    } else if (key === 'syntax') this.directives.syntax = value;
    else this.directives.check = value;
    return undefined;
  }
}

const trimNewline = (s: string): string => s.replace(/[\r\n]+$/, '');
const isComment = (s: string): boolean => trimNewline(s).trimStart().startsWith('#');

/** Lines with their line endings (bufio.ScanLines that keeps them, as heredoc bodies need). */
function splitLines(text: string): string[] {
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  if (lines.length > 0 && (lines[0] as string).startsWith('\ufeff')) lines[0] = (lines[0] as string).slice(1);
  return lines;
}

function continuationPattern(escape: string): RegExp {
  const e = escape === '\\' ? '\\\\' : '`';
  // The escape character as the last non-blank character, unless escaped itself.
  return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
}

function trimContinuation(line: string, escape: string): { text: string; ends: boolean } {
  const re = continuationPattern(escape);
  if (!re.test(line)) return { text: line, ends: true };
  return { text: line.replace(re, '$1'), ends: false };
}

export function scanDockerfile(text: string, file: string): ScanResult {
  const lines = splitLines(text);
  const reader = new DirectiveReader();
  const instructions: RawInstruction[] = [];
  const warnings: string[] = [];
  let index = 0;
  let lineNo = 0;

  /** Reads one line: newline cut, directive checked, a comment turned into "". */
  const readLine = (stripLeft: boolean): string => {
    let token = trimNewline(lines[index++] as string);
    if (stripLeft) token = token.trimStart();
    const problem = reader.consider(token);
    if (problem !== undefined) throw new DockerfileError(file, lineNo + 1, problem);
    lineNo++;
    return token.startsWith('#') ? '' : token;
  };

  while (index < lines.length) {
    const first = readLine(true);
    const startLine = lineNo;
    let { text: line, ends } = trimContinuation(first, reader.directives.escape);
    if (ends && line === '') continue;
    let emptyContinuation = false;
    while (!ends && index < lines.length) {
      const rawLine = lines[index] as string;
      const token = readLine(false);
      if (isComment(rawLine)) continue;
      if (token.trim() === '') {
        emptyContinuation = true;
        continue;
      }
      const next = trimContinuation(token, reader.directives.escape);
      line += next.text;
      ends = next.ends;
    }
    if (emptyContinuation) warnings.push(`${file}:${startLine}: empty continuation line found in: ${line}`);
    const { cmd, flags, rest } = splitCommand(line);
    const instruction: RawInstruction = { cmd, flags, rest, line: startLine, endLine: lineNo, original: line, heredocs: [] };
    if (mayHaveHeredocs(cmd, rest)) {
      const docs = heredocWords(line, file, startLine);
      for (const doc of docs) {
        const body = readHeredocBody(lines, index, doc);
        if (body === undefined) throw new DockerfileError(file, startLine, `unterminated heredoc ${doc.name} (no line "${doc.name}" before the end of the file)`);
        index += body.linesRead;
        lineNo += body.linesRead;
        instruction.heredocs.push({ ...doc, content: doc.chomp ? body.content.replace(/^\t+/gm, '') : body.content });
      }
      instruction.endLine = lineNo;
    }
    instructions.push(instruction);
  }
  return { directives: reader.directives, instructions, warnings };
}

/** Heredocs belong to RUN, COPY and ADD in shell form, also as an ONBUILD trigger. */
function mayHaveHeredocs(cmd: string, rest: string): boolean {
  let name = cmd.toLowerCase();
  let args = rest;
  if (name === 'onbuild') {
    const inner = splitCommand(rest);
    name = inner.cmd.toLowerCase();
    args = inner.rest;
  }
  if (!HEREDOC_COMMANDS.has(name)) return false;
  try {
    return !tryJsonArray(args).json;
  } catch (err) {
    // A JSON array of non-strings is reported by the instruction parser with its line.
    if (err instanceof LocalSyntaxError) return false;
    throw err;
  }
}

/** The heredoc words of a line (`<<EOF`, `<<-EOF`, `3<<"EOF"`) with their quoting. */
function heredocWords(line: string, file: string, lineNo: number): Omit<Heredoc, 'content'>[] {
  let words: string[];
  try {
    words = processWords(line, () => undefined, { escape: '\\', rawQuotes: true, rawEscapes: true, skipUnset: true });
  } catch (err) {
    // BuildKit ignores lexing errors here: an unbalanced quote in a RUN line is the
    // shell's business, and such a line cannot hold a heredoc word anyway.
    if (err instanceof LocalSyntaxError) return [];
    throw err;
  }
  const docs: Omit<Heredoc, 'content'>[] = [];
  for (const word of words) {
    const match = HEREDOC_WORD.exec(word);
    if (!match || match[3] === '') continue;
    const doc = heredocFromMatch(match as RegExpExecArray & [string, string, string, string], file, lineNo);
    if (doc) docs.push(doc);
  }
  return docs;
}

function heredocFromMatch(match: [string, string, string, string], file: string, lineNo: number): Omit<Heredoc, 'content'> | undefined {
  const [, fd, dash, rest] = match;
  const lex = (rawQuotes: boolean): string[] => {
    try {
      return processWords(rest, () => undefined, { escape: '\\', rawQuotes, skipUnset: true });
    } catch (err) {
      if (err instanceof LocalSyntaxError) throw new DockerfileError(file, lineNo, `invalid heredoc delimiter ${rest}: ${err.message}`);
      throw err;
    }
  };
  const plain = lex(false);
  if (plain.length !== 1) return undefined;
  const raw = lex(true);
  const quotes = (s: string) => (s.match(/['"]/g) ?? []).length;
  // A delimiter with any quoted part turns expansion of the body off (sh(1), "Here-Document").
  const expand = quotes(plain[0] as string) === quotes(raw[0] ?? '');
  const doc: Omit<Heredoc, 'content'> = { name: plain[0] as string, expand, chomp: dash === '-' };
  if (fd !== '') doc.fileDescriptor = Number(fd);
  return doc;
}

function readHeredocBody(lines: readonly string[], start: number, doc: Omit<Heredoc, 'content'>): { content: string; linesRead: number } | undefined {
  let content = '';
  for (let i = start; i < lines.length; i++) {
    const raw = lines[i] as string;
    let candidate = trimNewline(raw);
    if (doc.chomp) candidate = candidate.replace(/^\t+/, '');
    if (candidate === doc.name) return { content, linesRead: i - start + 1 };
    content += raw;
  }
  return undefined;
}
