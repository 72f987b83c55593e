// Splits a `command:`/`entrypoint:` string the way Docker Compose does (compose-go uses
// github.com/mattn/go-shellwords with its defaults): blanks separate words, single quotes
// are literal, double quotes group, a backslash outside single quotes escapes the next
// character. No variable or glob expansion: that is the shell's job, not Compose's.
// go-shellwords stops at an unquoted ; & | < or >, dropping the rest; we keep that result
// and report what was dropped instead of losing it silently.

export interface ShellSplit {
  words: string[];
  /** Text after an unquoted shell operator, which Compose drops. */
  dropped?: string;
}

export class ShellSplitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShellSplitError';
  }
}

const BLANK = new Set([' ', '\t', '\r', '\n']);
const OPERATOR = new Set([';', '&', '|', '<', '>']);

export function shellSplit(line: string): ShellSplit {
  const words: string[] = [];
  let buf = '';
  let inWord = false;
  let single = false;
  let double = false;
  let escaped = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (escaped) {
      buf += c;
      escaped = false;
      inWord = true;
    } else if (c === '\\' && !single) {
      escaped = true;
    } else if (BLANK.has(c) && !single && !double) {
      if (inWord) words.push(buf);
      buf = '';
      inWord = false;
    } else if (c === '"' && !single) {
      double = !double;
      inWord = true;
    } else if (c === "'" && !double) {
      single = !single;
      inWord = true;
    } else if (OPERATOR.has(c) && !single && !double) {
      if (inWord) words.push(buf);
      return { words, dropped: line.slice(i) };
    } else {
      buf += c;
      inWord = true;
    }
  }
  if (escaped || single || double) throw new ShellSplitError(`unterminated quote or escape in ${JSON.stringify(line)}`);
  if (inWord) words.push(buf);
  return { words };
}
