// Label and field selectors, with the syntax and semantics of Kubernetes'
// k8s.io/apimachinery/pkg/labels (selector.go) and pkg/fields (selector.go), so that what
// works with `kubectl get -l ...` / `--field-selector ...` works with d2p.
//
// Label grammar (from labels/selector.go):
//   <selector>    ::= <requirement> | <requirement> "," <selector>
//   <requirement> ::= [!] KEY [ <set-based> | <exact-match> | <gt-lt> ]
//   <set-based>   ::= ("in" | "notin") "(" VALUE ["," VALUE]* ")"
//   <exact-match> ::= ("=" | "==" | "!=") VALUE
//   <gt-lt>       ::= (">" | "<") INTEGER
import type { ApiObject } from '../api/meta';
import { ApiError } from '../api/errors';

export type Labels = Readonly<Record<string, string>> | undefined;
export type LabelMatcher = (labels: Labels) => boolean;
export type FieldMatcher = (obj: ApiObject) => boolean;

type Operator = 'in' | 'notin' | '=' | '!=' | 'exists' | '!' | 'gt' | 'lt';

export interface LabelRequirement {
  key: string;
  operator: Operator;
  values: string[];
}

// --- lexer --------------------------------------------------------------------------------

type TokenKind = 'identifier' | 'in' | 'notin' | '!' | '!=' | '=' | '==' | '>' | '<' | '(' | ')' | ',' | 'end';

interface Token {
  kind: TokenKind;
  text: string;
}

const SPECIAL_TOKENS: readonly TokenKind[] = ['!=', '==', '!', '=', '>', '<', '(', ')', ','];

function isIdentifierChar(ch: string): boolean {
  return !/\s/.test(ch) && !'!=><(),'.includes(ch);
}

function tokenize(selector: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < selector.length) {
    if (/\s/.test(selector[i])) {
      i++;
      continue;
    }
    const special = SPECIAL_TOKENS.find((t) => selector.startsWith(t, i));
    if (special) {
      tokens.push({ kind: special, text: special });
      i += special.length;
      continue;
    }
    let end = i;
    while (end < selector.length && isIdentifierChar(selector[end])) end++;
    const text = selector.slice(i, end);
    tokens.push({ kind: text === 'in' || text === 'notin' ? text : 'identifier', text });
    i = end;
  }
  tokens.push({ kind: 'end', text: '' });
  return tokens;
}

// --- validation (apimachinery/pkg/util/validation) ------------------------------------------

const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Why `key` is not a valid label key, or undefined when it is. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    return `prefix of ${JSON.stringify(key)} must be a lowercase DNS subdomain of at most 253 characters`;
  }
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME_PART.test(name)) {
    return `${JSON.stringify(key)} must be at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric (with an optional DNS-subdomain prefix and '/')`;
  }
  return undefined;
}

/** Why `value` is not a valid label value, or undefined when it is. */
export function labelValueProblem(value: string): string | undefined {
  if (value.length > 63 || !LABEL_VALUE.test(value)) {
    return `${JSON.stringify(value)} must be empty or at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric`;
  }
  return undefined;
}

// --- parser ---------------------------------------------------------------------------------

class LabelSelectorParser {
  private position = 0;

  constructor(
    private readonly selector: string,
    private readonly tokens: Token[],
  ) {}

  parse(): LabelRequirement[] {
    const requirements: LabelRequirement[] = [];
    if (this.peek().kind === 'end') return requirements;
    for (;;) {
      requirements.push(this.parseRequirement());
      const next = this.take();
      if (next.kind === 'end') return requirements;
      if (next.kind !== ',') this.fail(`expected "," or end of selector, found ${JSON.stringify(next.text)}`);
    }
  }

  private parseRequirement(): LabelRequirement {
    if (this.peek().kind === '!') {
      this.take();
      const key = this.parseKey();
      const after = this.peek().kind;
      if (after !== ',' && after !== 'end') this.fail(`"!${key}" takes no operator or value`);
      return { key, operator: '!', values: [] };
    }
    const key = this.parseKey();
    const separator = this.peek().kind;
    if (separator === ',' || separator === 'end') return { key, operator: 'exists', values: [] };
    const op = this.take();
    switch (op.kind) {
      case '=':
      case '==':
        return { key, operator: '=', values: [this.parseValue()] };
      case '!=':
        return { key, operator: '!=', values: [this.parseValue()] };
      case '>':
      case '<':
        return { key, operator: op.kind === '>' ? 'gt' : 'lt', values: [this.parseInteger()] };
      case 'in':
      case 'notin':
        return { key, operator: op.kind, values: this.parseValueSet() };
      default:
        return this.fail(`expected an operator after ${JSON.stringify(key)}, found ${JSON.stringify(op.text)}`);
    }
  }

  private parseKey(): string {
    const token = this.take();
    if (token.kind !== 'identifier') this.fail(`expected a label key, found ${JSON.stringify(token.text || 'end')}`);
    const problem = labelKeyProblem(token.text);
    if (problem) this.fail(`invalid label key: ${problem}`);
    return token.text;
  }

  private parseValue(): string {
    const next = this.peek();
    // `a=` selects the empty value, as in Kubernetes.
    if (next.kind === ',' || next.kind === 'end' || next.kind === ')') return '';
    const token = this.take();
    if (token.kind !== 'identifier' && token.kind !== 'in' && token.kind !== 'notin') {
      this.fail(`expected a label value, found ${JSON.stringify(token.text)}`);
    }
    const problem = labelValueProblem(token.text);
    if (problem) this.fail(`invalid label value: ${problem}`);
    return token.text;
  }

  private parseInteger(): string {
    const token = this.take();
    if (token.kind !== 'identifier' || !/^-?\d+$/.test(token.text)) {
      this.fail(`expected an integer after ">" or "<", found ${JSON.stringify(token.text)}`);
    }
    return token.text;
  }

  private parseValueSet(): string[] {
    if (this.take().kind !== '(') this.fail('expected "(" after in/notin');
    const values: string[] = [];
    for (;;) {
      values.push(this.parseValue());
      const token = this.take();
      if (token.kind === ')') return values;
      if (token.kind !== ',') this.fail(`expected "," or ")" in value set, found ${JSON.stringify(token.text || 'end')}`);
    }
  }

  private peek(): Token {
    return this.tokens[this.position];
  }

  private take(): Token {
    const token = this.tokens[this.position];
    if (token.kind !== 'end') this.position++;
    return token;
  }

  private fail(why: string): never {
    throw new ApiError('BadRequest', `unable to parse label selector ${JSON.stringify(this.selector)}: ${why}`, {
      causes: [{ field: 'labelSelector', reason: 'FieldValueInvalid', message: why }],
    });
  }
}

/** The requirements of a label selector; a bad selector is a BadRequest ApiError naming it. */
export function parseLabelRequirements(selector: string): LabelRequirement[] {
  return new LabelSelectorParser(selector, tokenize(selector)).parse();
}

function requirementMatches(r: LabelRequirement, labels: Labels): boolean {
  const has = labels !== undefined && Object.prototype.hasOwnProperty.call(labels, r.key);
  const value = has ? labels![r.key] : undefined;
  switch (r.operator) {
    case 'exists':
      return has;
    case '!':
      return !has;
    case '=':
    case 'in':
      return has && r.values.includes(value!);
    // As in Kubernetes, `a!=b` and `a notin (b)` also select objects without label a.
    case '!=':
    case 'notin':
      return !has || !r.values.includes(value!);
    case 'gt':
    case 'lt': {
      if (!has || !/^-?\d+$/.test(value!)) return false;
      const actual = BigInt(value!);
      const bound = BigInt(r.values[0]);
      return r.operator === 'gt' ? actual > bound : actual < bound;
    }
  }
}

/** Compiles a Kubernetes label selector; the empty selector matches everything. */
export function parseLabelSelector(selector: string): LabelMatcher {
  const requirements = parseLabelRequirements(selector);
  return (labels) => requirements.every((r) => requirementMatches(r, labels));
}

// --- field selectors ------------------------------------------------------------------------

export interface FieldRequirement {
  field: string;
  operator: '=' | '!=';
  value: string;
}

const FIELD_PATH = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

function fieldSelectorError(selector: string, why: string): ApiError {
  return new ApiError('BadRequest', `unable to parse field selector ${JSON.stringify(selector)}: ${why}`, {
    causes: [{ field: 'fieldSelector', reason: 'FieldValueInvalid', message: why }],
  });
}

// Terms are separated by unescaped commas; `\` escapes `\`, `,` and `=` in values
// (fields/selector.go splitTerms and UnescapeValue).
function splitTerms(selector: string): string[] {
  const terms: string[] = [];
  let current = '';
  for (let i = 0; i < selector.length; i++) {
    const ch = selector[i];
    if (ch === '\\' && i + 1 < selector.length) {
      current += ch + selector[i + 1];
      i++;
    } else if (ch === ',') {
      terms.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  terms.push(current);
  return terms;
}

function unescapeValue(selector: string, raw: string): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] !== '\\') {
      out += raw[i];
      continue;
    }
    const next = raw[i + 1];
    if (next !== '\\' && next !== ',' && next !== '=') {
      throw fieldSelectorError(selector, `invalid escape sequence in value ${JSON.stringify(raw)}`);
    }
    out += next;
    i++;
  }
  return out;
}

function parseFieldTerm(selector: string, term: string): FieldRequirement {
  // Operators in Kubernetes' order of precedence: "!=" before "==" before "=".
  for (const [token, operator] of [['!=', '!='], ['==', '='], ['=', '=']] as const) {
    const at = term.indexOf(token);
    if (at < 0) continue;
    const field = term.slice(0, at).trim();
    if (!FIELD_PATH.test(field)) {
      throw fieldSelectorError(selector, `invalid field path ${JSON.stringify(field)}`);
    }
    return { field, operator, value: unescapeValue(selector, term.slice(at + token.length).trim()) };
  }
  throw fieldSelectorError(selector, `term ${JSON.stringify(term)} has no "=", "==" or "!=" operator`);
}

/** The terms of a field selector; a bad selector is a BadRequest ApiError naming it. */
export function parseFieldRequirements(selector: string): FieldRequirement[] {
  if (selector.trim() === '') return [];
  return splitTerms(selector).map((term) => parseFieldTerm(selector, term));
}

/**
 * The value of a dotted field path as a field selector sees it: scalars as strings, and ""
 * when absent (Kubernetes' fields.Set.Get returns "" for a missing field, so `a!=x` selects it).
 */
export function fieldValue(obj: unknown, path: string): string {
  let current: unknown = obj;
  for (const segment of path.split('.')) {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return '';
    current = (current as Record<string, unknown>)[segment];
  }
  if (typeof current === 'string') return current;
  if (typeof current === 'number' || typeof current === 'boolean') return String(current);
  return '';
}

/**
 * Compiles a field selector (`metadata.name=web`, `involvedObject.name==x`,
 * `status.phase!=Running`). `metadata.namespace` of an object without one is "default".
 */
export function parseFieldSelector(selector: string): FieldMatcher {
  const requirements = parseFieldRequirements(selector);
  return (obj) =>
    requirements.every((r) => {
      const actual =
        r.field === 'metadata.namespace' ? (obj.metadata.namespace ?? 'default') : fieldValue(obj, r.field);
      return r.operator === '=' ? actual === r.value : actual !== r.value;
    });
}

/** One predicate for a list/watch request's label and field selectors together. */
export function compileSelectors(opts: { labelSelector?: string; fieldSelector?: string }): FieldMatcher {
  const labels = parseLabelSelector(opts.labelSelector ?? '');
  const fields = parseFieldSelector(opts.fieldSelector ?? '');
  return (obj) => labels(obj.metadata.labels) && fields(obj);
}
