// .dockerignore with Docker's rules (moby/patternmatcher and its ignorefile.ReadAll, the
// code `docker build` and BuildKit use; https://docs.docker.com/build/concepts/context/#dockerignore-files):
// - a line starting with `#` is a comment; blank lines are skipped; each pattern is trimmed,
//   cleaned like Go's filepath.Clean (`./a/` → `a`, `a//b/../c` → `a/c`) and a leading `/`
//   dropped, so patterns are relative to the context root;
// - `*` matches any run of non-separator characters, `?` one, `[...]` a class (filepath.Match),
//   `**` any number of directories (also none), `\` escapes the next character;
// - a pattern also matches everything below a directory it matches;
// - `!pattern` re-includes; the last pattern that matches a path decides.
// The Dockerfile and .dockerignore are sent to the builder even when ignored: that is the
// caller's job (Docker's CLI adds them back), this module only answers for the patterns.

export interface IgnorePattern {
  /** The cleaned pattern, without the `!`. */
  pattern: string;
  exclusion: boolean;
  /** 1-based line in the .dockerignore. */
  line: number;
}

export interface DockerIgnore {
  readonly patterns: readonly IgnorePattern[];
  /**
   * True when `relPath` (relative to the context, `/`-separated) is left out of the context.
   * `isDir` does not change the answer (Docker's patterns have no trailing-slash form) but
   * says what the caller is asking about.
   */
  ignores(relPath: string, isDir: boolean): boolean;
  /**
   * For an ignored directory: must the walk still enter it, because an exception (`!…`)
   * could re-include something below? When false the whole directory can be skipped.
   */
  mustTraverse(relDir: string): boolean;
}

export class DockerignoreError extends Error {
  readonly code = 'D2P_DOCKERIGNORE_INVALID';
  constructor(
    readonly line: number,
    readonly pattern: string,
    why: string,
  ) {
    super(`.dockerignore:${line}: invalid pattern "${pattern}": ${why}`);
    this.name = 'DockerignoreError';
  }
}

interface Compiled extends IgnorePattern {
  regex: RegExp;
  segments: string[];
}

export function compileDockerignore(text: string): DockerIgnore {
  const compiled = readPatterns(text).map(compilePattern);
  const hasExclusions = compiled.some((p) => p.exclusion);
  return {
    patterns: compiled.map(({ pattern, exclusion, line }) => ({ pattern, exclusion, line })),
    ignores: (relPath: string) => matches(compiled, cleanPath(relPath)),
    mustTraverse: (relDir: string) => hasExclusions && compiled.some((p) => p.exclusion && couldMatchBelow(p.segments, splitPath(cleanPath(relDir)))),
  };
}

/** The patterns of a .dockerignore, as ignorefile.ReadAll reads them. */
export function readPatterns(text: string): IgnorePattern[] {
  const out: IgnorePattern[] = [];
  const lines = text.replace(/^\ufeff/, '').split('\n');
  lines.forEach((raw, i) => {
    if (raw.startsWith('#')) return;
    let pattern = raw.trim();
    if (pattern === '') return;
    const exclusion = pattern.startsWith('!');
    if (exclusion) pattern = pattern.slice(1).trim();
    if (pattern === '') throw new DockerignoreError(i + 1, raw.trim(), 'an exclusion needs a pattern after "!"');
    pattern = cleanPath(pattern);
    out.push({ pattern, exclusion, line: i + 1 });
  });
  return out;
}

/** Go's path.Clean, then without a leading "/" (patterns and paths are context-relative). */
export function cleanPath(p: string): string {
  const absolute = p.startsWith('/');
  const parts: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length > 0 && parts[parts.length - 1] !== '..') parts.pop();
      else if (!absolute) parts.push('..');
      continue;
    }
    parts.push(part);
  }
  const joined = parts.join('/');
  return joined === '' ? '.' : joined;
}

const splitPath = (p: string): string[] => (p === '.' ? [] : p.split('/'));

function compilePattern(p: IgnorePattern): Compiled {
  return { ...p, regex: new RegExp(`^${globSource(p.pattern, p)}$`, 's'), segments: splitPath(p.pattern) };
}

/** patternmatcher's compile(): the pattern as a regular expression over the whole path. */
function globSource(pattern: string, where: IgnorePattern): string {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] as string;
    if (ch === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        // "**/" is "**": the slash is eaten so "**/x" matches "x" at any depth, even the top.
        if (pattern[i + 1] === '/') i++;
        out += i + 1 >= pattern.length ? '.*' : '(.*/)?';
      } else {
        out += '[^/]*';
      }
    } else if (ch === '?') {
      out += '[^/]';
    } else if (ch === '\\') {
      const next = pattern[i + 1];
      if (next === undefined) throw new DockerignoreError(where.line, where.pattern, 'trailing backslash');
      out += escapeRegExp(next);
      i++;
    } else if (ch === '[') {
      const { source, end } = charClass(pattern, i, where);
      out += source;
      i = end;
    } else {
      out += escapeRegExp(ch);
    }
  }
  return out;
}

/** A filepath.Match class: `[abc]`, `[a-z]`, `[^x]` (Go spells negation `^`; `!` accepted too). */
function charClass(pattern: string, start: number, where: IgnorePattern): { source: string; end: number } {
  let i = start + 1;
  let source = '[';
  if (pattern[i] === '^' || pattern[i] === '!') {
    source += '^';
    i++;
  }
  let first = true;
  for (; i < pattern.length; i++) {
    const ch = pattern[i] as string;
    if (ch === ']' && !first) return { source: `${source}]`, end: i };
    first = false;
    if (ch === '\\') {
      i++;
      if (i >= pattern.length) break;
      source += escapeRegExp(pattern[i] as string);
    } else if (ch === '-') source += '-';
    else source += escapeRegExp(ch);
  }
  throw new DockerignoreError(where.line, where.pattern, 'unterminated character class "["');
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');

/** MatchesOrParentMatches: last matching pattern wins; a match of a parent directory counts. */
function matches(patterns: readonly Compiled[], path: string): boolean {
  const segments = splitPath(path);
  const parents = segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join('/'));
  let matched = false;
  for (const p of patterns) {
    // An inclusion cannot change an already-ignored path, nor an exception a kept one.
    if (p.exclusion !== matched) continue;
    const hit = p.regex.test(path) || parents.some((parent) => p.regex.test(parent));
    if (hit) matched = !p.exclusion;
  }
  return matched;
}

/**
 * Could a pattern match a path strictly below `dir`? Segment by segment, the pattern's
 * leading segments must match the directory's (a `**` can absorb any remainder), and some
 * pattern segment must be left for what lies below.
 */
function couldMatchBelow(patternSegments: readonly string[], dirSegments: readonly string[]): boolean {
  for (let i = 0; i < dirSegments.length; i++) {
    const seg = patternSegments[i];
    if (seg === undefined) return false;
    if (seg.includes('**')) return true;
    if (!new RegExp(`^${segmentSource(seg)}$`, 's').test(dirSegments[i] as string)) return false;
  }
  return patternSegments.length > dirSegments.length;
}

function segmentSource(segment: string): string {
  return globSource(segment, { pattern: segment, exclusion: false, line: 0 });
}
