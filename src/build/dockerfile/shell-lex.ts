// Docker's word processing and variable substitution, as BuildKit's shell lexer does it
// (moby/buildkit frontend/dockerfile/shell/lex.go): quotes are removed ('…' literal,
// "…" with $ expanded and \" \$ \\ escapes), the escape character escapes the next
// character, and $VAR, ${VAR}, ${VAR:-word}, ${VAR-word}, ${VAR:+word}, ${VAR+word},
// ${VAR:?msg}, ${VAR?msg}, ${VAR#pat}, ${VAR##pat}, ${VAR%pat}, ${VAR%%pat} are expanded
// with the POSIX meaning (XCU 2.6.2 Parameter Expansion). There is no command
// substitution, arithmetic, or word splitting of the result except in processWords().
import { LocalSyntaxError } from './errors';

/** The variables visible to a substitution; `undefined` means unset (unlike empty). */
export type Lookup = (name: string) => string | undefined;

export interface LexOptions {
  escape: '\\' | '`';
  /** Keep quote characters in the output (used to find heredoc words). */
  rawQuotes?: boolean;
  /** Keep escape characters in the output. */
  rawEscapes?: boolean;
  /** Leave references to unset variables as written instead of expanding them to "". */
  skipUnset?: boolean;
  /**
   * Treat quotes as ordinary characters (BuildKit's SkipProcessQuotes): used to expand the
   * body of a COPY/ADD heredoc, where quotes are file content.
   */
  literalQuotes?: boolean;
}

const EOF = '';

class Scanner {
  private pos = 0;
  private readonly chars: string[];
  constructor(text: string) {
    // Iterate by code point so a multi-byte character is never split.
    this.chars = Array.from(text);
  }
  peek(): string {
    return this.chars[this.pos] ?? EOF;
  }
  next(): string {
    const ch = this.chars[this.pos] ?? EOF;
    if (ch !== EOF) this.pos++;
    return ch;
  }
}

const isSpace = (ch: string): boolean => /^\s$/u.test(ch);

/** Collects the words of ProcessWords: unquoted whitespace separates, quoted text does not. */
class Words {
  word = '';
  words: string[] = [];
  inWord = false;

  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord && this.word.length > 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else {
      this.addRaw(ch);
    }
  }
  addRaw(text: string): void {
    this.word += text;
    this.inWord = true;
  }
  addExpanded(text: string): void {
    for (const ch of text) this.addChar(ch);
  }
  finish(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

class ShellWord {
  private readonly scanner: Scanner;
  constructor(
    text: string,
    private readonly lookup: Lookup,
    private readonly opts: LexOptions,
  ) {
    this.scanner = new Scanner(text);
  }

  process(stopChar: string): { word: string; words: string[] } {
    let result = '';
    const words = new Words();
    const sc = this.scanner;
    while (sc.peek() !== EOF) {
      const ch = sc.peek();
      if (stopChar !== EOF && ch === stopChar) {
        sc.next();
        return { word: result, words: words.finish() };
      }
      const quote = (ch === "'" || ch === '"') && !this.opts.literalQuotes;
      if (quote || ch === '$') {
        const piece = ch === "'" ? this.singleQuote() : ch === '"' ? this.doubleQuote() : this.dollar();
        result += piece;
        if (ch === '$') words.addExpanded(piece);
        else words.addRaw(piece);
        continue;
      }
      let c = sc.next();
      if (c === this.opts.escape) {
        if (this.opts.rawEscapes) {
          words.addRaw(c);
          result += c;
        }
        c = sc.next();
        // An escape character at the very end is dropped, as BuildKit does.
        if (c === EOF) break;
        words.addRaw(c);
      } else {
        words.addChar(c);
      }
      result += c;
    }
    if (stopChar !== EOF) {
      throw new LocalSyntaxError(`unexpected end of statement while looking for matching ${stopChar}`);
    }
    return { word: result, words: words.finish() };
  }

  private singleQuote(): string {
    // sh(1): single quotes preserve every character; a single quote cannot be escaped inside.
    const sc = this.scanner;
    let result = this.opts.rawQuotes ? sc.next() : (sc.next(), '');
    for (;;) {
      const ch = sc.next();
      if (ch === EOF) throw new LocalSyntaxError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") return this.opts.rawQuotes ? result + ch : result;
      result += ch;
    }
  }

  private doubleQuote(): string {
    // sh(1): inside double quotes only $, the escape character and " keep a meaning.
    const sc = this.scanner;
    let result = this.opts.rawQuotes ? sc.next() : (sc.next(), '');
    for (;;) {
      const peek = sc.peek();
      if (peek === EOF) throw new LocalSyntaxError('unexpected end of statement while looking for matching double-quote');
      if (peek === '"') {
        sc.next();
        return this.opts.rawQuotes ? result + '"' : result;
      }
      if (peek === '$') {
        result += this.dollar();
        continue;
      }
      let ch = sc.next();
      if (ch === this.opts.escape) {
        const after = sc.peek();
        if (after === EOF) continue;
        if (after === '"' || after === '$' || after === this.opts.escape) {
          if (this.opts.rawEscapes) result += ch;
          ch = sc.next();
        }
      }
      result += ch;
    }
  }

  private dollar(): string {
    const sc = this.scanner;
    sc.next(); // the '$'
    if (sc.peek() !== '{') {
      const name = this.name();
      if (name === '') return '$';
      const value = this.lookup(name);
      if (value === undefined && this.opts.skipUnset) return `$${name}`;
      return value ?? '';
    }
    sc.next(); // the '{'
    const first = sc.peek();
    if (first === EOF) throw new LocalSyntaxError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new LocalSyntaxError('syntax error: bad substitution');
    const name = this.name();
    const op = sc.next();
    const value = this.lookup(name);
    switch (op) {
      case '}':
        if (value === undefined && this.opts.skipUnset) return `\${${name}}`;
        return value ?? '';
      case ':':
        return this.colonModifier(name, value);
      case '-':
        return value === undefined ? this.word() : (this.word(), value);
      case '+':
        return value === undefined ? (this.word(), '') : this.word();
      case '?': {
        const message = this.word();
        if (value === undefined) throw new LocalSyntaxError(`${name}: ${message || 'is not allowed to be unset'}`);
        return value;
      }
      case '#':
      case '%':
        return this.trimPattern(op, value ?? '');
      case EOF:
        throw new LocalSyntaxError("syntax error: missing '}'");
      default:
        throw new LocalSyntaxError(`unsupported modifier (${op}) in substitution`);
    }
  }

  /** ${VAR:-word}, ${VAR:+word}, ${VAR:?message}: like the colon-less forms, empty counting as unset. */
  private colonModifier(name: string, value: string | undefined): string {
    const modifier = this.scanner.next();
    const word = this.word();
    const empty = value === undefined || value === '';
    switch (modifier) {
      case '-':
        return empty ? word : (value as string);
      case '+':
        return empty ? '' : word;
      case '?':
        if (empty) throw new LocalSyntaxError(`${name}: ${word || 'is not allowed to be empty'}`);
        return value as string;
      case EOF:
        throw new LocalSyntaxError("syntax error: missing '}'");
      default:
        throw new LocalSyntaxError(`unsupported modifier (${modifier}) in substitution`);
    }
  }

  /** ${VAR#pat} ${VAR##pat} (shortest/longest prefix) and ${VAR%pat} ${VAR%%pat} (suffix). */
  private trimPattern(op: '#' | '%', value: string): string {
    const longest = this.scanner.peek() === op;
    if (longest) this.scanner.next();
    const pattern = globToRegExpSource(this.word());
    const candidates = Array.from({ length: value.length + 1 }, (_, i) => i);
    // Prefix: try lengths 0..n (shortest) or n..0 (longest); suffix likewise from the end.
    const order = longest ? candidates.reverse() : candidates;
    const re = new RegExp(`^(?:${pattern})$`, 's');
    for (const len of order) {
      const part = op === '#' ? value.slice(0, len) : value.slice(value.length - len);
      if (re.test(part)) return op === '#' ? value.slice(len) : value.slice(0, value.length - len);
    }
    return value;
  }

  /** The word of a modifier, up to the closing brace, itself expanded. */
  private word(): string {
    try {
      return this.process('}').word;
    } catch (err) {
      if (err instanceof LocalSyntaxError && this.scanner.peek() === EOF && err.message.startsWith('unexpected end')) {
        throw new LocalSyntaxError("syntax error: missing '}'");
      }
      throw err;
    }
  }

  /** A variable name: letters, digits and _, or a run of digits, or one special parameter. */
  private name(): string {
    const sc = this.scanner;
    let name = '';
    while (sc.peek() !== EOF) {
      const ch = sc.peek();
      if (name === '' && /^\d$/.test(ch)) {
        while (/^\d$/.test(sc.peek())) name += sc.next();
        return name;
      }
      // POSIX special parameters (XCU 2.5.2): $@ $* $# $? $- $$ $! $0.
      if (name === '' && '@*#?-$!0'.includes(ch)) return sc.next();
      if (!/^[\p{L}\p{Nd}_]$/u.test(ch)) break;
      name += sc.next();
    }
    return name;
  }
}

/** Shell pattern (fnmatch: * ? [...]) to a RegExp source. */
function globToRegExpSource(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i] as string;
    if (ch === '*') out += '.*';
    else if (ch === '?') out += '.';
    else if (ch === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) out += '\\[';
      else {
        let body = glob.slice(i + 1, close);
        if (body.startsWith('!')) body = `^${body.slice(1)}`;
        out += `[${body.replace(/\\/g, '\\\\')}]`;
        i = close;
      }
    } else out += ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return out;
}

/** One word with quotes removed and variables expanded (BuildKit's ProcessWord). */
export function processWord(text: string, lookup: Lookup, opts: LexOptions): string {
  return new ShellWord(text, lookup, opts).process(EOF).word;
}

/** The whitespace-separated words after expansion (BuildKit's ProcessWords). */
export function processWords(text: string, lookup: Lookup, opts: LexOptions): string[] {
  return new ShellWord(text, lookup, opts).process(EOF).words;
}
