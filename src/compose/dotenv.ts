// The `.env` / `env_file` syntax as Docker Compose reads it (compose-go's dotenv parser,
// documented in the Compose "env_file" and "Set environment variables" pages):
//   KEY=value            unquoted: up to end of line, " #" starts a comment, trailing space trimmed
//   KEY="a\nb ${X}"      double quotes: may span lines, escapes (\n \t \\ \" \$ ...), interpolation
//   KEY='literal $X'     single quotes: may span lines, no escapes but \', no interpolation
//   export KEY=value     "export " is ignored;  KEY: value  is accepted too
//   KEY                  alone: takes KEY from the environment, or is left unset
import { ComposeError } from './errors';
import { substitute, TemplateError, type Lookup } from './interpolate';

export interface DotenvEntry {
  key: string;
  value: string;
  line: number;
}

const KEY_CHAR = /[A-Za-z0-9_.\-[\]]/;
const INLINE_SPACE = /[ \t\v\f\r\u0085\u00a0]/;

class DotenvParser {
  private i = 0;
  private line = 1;
  private readonly parsed = new Map<string, string>();
  readonly entries: DotenvEntry[] = [];

  constructor(
    private readonly text: string,
    private readonly file: string,
    private readonly lookup: Lookup,
  ) {}

  parse(): DotenvEntry[] {
    for (;;) {
      this.skipBlankAndComments();
      if (this.i >= this.text.length) return this.entries;
      this.statement();
    }
  }

  private error(message: string, line = this.line): never {
    throw new ComposeError(message, { pos: { file: this.file, line, column: 1 } });
  }

  private skipBlankAndComments(): void {
    while (this.i < this.text.length) {
      const c = this.text[this.i];
      if (c === '\n') this.line++;
      if (c === '#') {
        while (this.i < this.text.length && this.text[this.i] !== '\n') this.i++;
        continue;
      }
      if (!/\s/.test(c)) return;
      this.i++;
    }
  }

  private statement(): void {
    const line = this.line;
    if (/^export[ \t]+/.test(this.text.slice(this.i, this.i + 8))) {
      this.i += 6;
      this.skipInlineSpace();
    }
    const start = this.i;
    while (this.i < this.text.length && !'=:\n'.includes(this.text[this.i])) {
      const c = this.text[this.i];
      if (!KEY_CHAR.test(c) && !INLINE_SPACE.test(c)) this.error(`unexpected character ${JSON.stringify(c)} in variable name`);
      this.i++;
    }
    const key = this.text.slice(start, this.i).trim();
    if (/\s/.test(key)) this.error(`key ${JSON.stringify(key)} cannot contain a space`);
    if (key === '') this.error('missing variable name before "="');
    const terminator = this.text[this.i];
    if (terminator === undefined || terminator === '\n') {
      // A bare KEY inherits its value from the environment, or stays unset.
      const inherited = this.lookup(key);
      if (inherited !== undefined) this.set(key, inherited, line);
      return;
    }
    this.i++;
    this.skipInlineSpace();
    this.set(key, this.value(), line);
  }

  private set(key: string, value: string, line: number): void {
    this.parsed.set(key, value);
    const existing = this.entries.findIndex((e) => e.key === key);
    if (existing >= 0) this.entries.splice(existing, 1);
    this.entries.push({ key, value, line });
  }

  private skipInlineSpace(): void {
    while (this.i < this.text.length && INLINE_SPACE.test(this.text[this.i])) this.i++;
  }

  private value(): string {
    const quote = this.text[this.i];
    if (quote === '"' || quote === "'") {
      const raw = this.quoted(quote);
      return quote === '"' ? this.expand(unescapeDoubleQuoted(raw)) : raw;
    }
    let end = this.text.indexOf('\n', this.i);
    if (end < 0) end = this.text.length;
    let value = this.text.slice(this.i, end);
    this.i = end;
    const comment = value.indexOf(' #');
    if (comment >= 0) value = value.slice(0, comment);
    return this.expand(value.trimEnd());
  }

  private quoted(quote: string): string {
    const startLine = this.line;
    let out = '';
    for (let j = this.i + 1; j < this.text.length; j++) {
      const c = this.text[j];
      if (c === '\n') this.line++;
      if (c === '\\' && j + 1 < this.text.length) {
        // An escaped quote loses its backslash; any other escape is kept for later.
        const next = this.text[j + 1];
        out += next === quote ? next : `\\${next}`;
        if (next === '\n') this.line++;
        j++;
        continue;
      }
      if (c === quote) {
        this.i = j + 1;
        return out;
      }
      out += c;
    }
    this.error(`unterminated quoted value`, startLine);
  }

  private expand(value: string): string {
    try {
      // compose-go looks the environment up first, then the keys read so far.
      return substitute(value, { lookup: (k) => this.lookup(k) ?? this.parsed.get(k) });
    } catch (err) {
      if (err instanceof TemplateError) this.error(err.message);
      throw err;
    }
  }
}

const ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b', f: '\f', v: '\v', '"': '"', '\\': '\\' };

/** Shell-style escapes of double-quoted values; "\$" stays a literal "$" through interpolation. */
function unescapeDoubleQuoted(raw: string): string {
  return raw.replace(/\\(0[0-7]{0,3}|[abfnrtv"\\$])/g, (_m, seq: string) => {
    if (seq === '$') return '$$';
    if (seq.startsWith('0')) return String.fromCharCode(parseInt(seq.slice(1) || '0', 8));
    return ESCAPES[seq];
  });
}

/** Parses env-file text; `lookup` resolves bare keys and ${VAR} references. Later keys win. */
export function parseDotenv(text: string, file: string, lookup: Lookup): DotenvEntry[] {
  return new DotenvParser(text, file, lookup).parse();
}
