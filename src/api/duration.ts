// Durations in Go's time.ParseDuration format, which is what Compose files use
// ("1m30s", "500ms", "10us"; see https://pkg.go.dev/time#ParseDuration and the Compose
// specification, "Specifying durations"). Arithmetic is done on integer nanoseconds with
// BigInt, as Go does on int64, so "1.1s" is exactly 1100 ms and not 1100.0000000000002.

export class InvalidDurationError extends Error {
  readonly code = 'D2P_INVALID_DURATION';
  readonly input: string;
  readonly why: string;

  constructor(input: string, why: string) {
    super(`invalid duration ${JSON.stringify(input)}: ${why}`);
    this.name = 'InvalidDurationError';
    this.input = input;
    this.why = why;
  }
}

const NS_PER_UNIT: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n],
  ['us', 1_000n],
  ['\u00b5s', 1_000n], // MICRO SIGN, which Go prints
  ['\u03bcs', 1_000n], // GREEK SMALL LETTER MU, which Go also accepts
  ['ms', 1_000_000n],
  ['s', 1_000_000_000n],
  ['m', 60_000_000_000n],
  ['h', 3_600_000_000_000n],
]);

/** Go's Duration is an int64 of nanoseconds: about 292 years. */
const MAX_NS = (1n << 63n) - 1n;

const NS_PER_MS = 1_000_000n;

type ParseResult = { ok: true; ns: bigint } | { ok: false; why: string };

// One "<number><unit>" term: digits with an optional fraction, then a run of non-digits.
const TERM = /^(\d*)(?:\.(\d*))?([^\d.]*)/;

function parseTerm(rest: string): { ns: bigint; length: number } | { why: string } {
  const match = TERM.exec(rest);
  if (!match) return { why: `unexpected ${JSON.stringify(rest)}` };
  const [whole, intDigits, fracDigits = '', unit] = match;
  if (intDigits === '' && fracDigits === '') return { why: `expected a number at ${JSON.stringify(rest)}` };
  if (unit === '') return { why: 'missing unit (ns, us, ms, s, m or h)' };
  const unitNs = NS_PER_UNIT.get(unit);
  if (unitNs === undefined) return { why: `unknown unit ${JSON.stringify(unit)} (valid: ns, us, ms, s, m, h)` };
  const intPart = BigInt(intDigits === '' ? '0' : intDigits) * unitNs;
  // Truncates below one nanosecond, as Go does.
  const fracPart = fracDigits === '' ? 0n : (BigInt(fracDigits) * unitNs) / 10n ** BigInt(fracDigits.length);
  return { ns: intPart + fracPart, length: whole.length };
}

function parseToNanoseconds(input: string): ParseResult {
  if (input === '') return { ok: false, why: 'empty string' };
  if (input.startsWith('-')) return { ok: false, why: 'must not be negative' };
  let rest = input.startsWith('+') ? input.slice(1) : input;
  // Go accepts a bare "0" (and only zero) without a unit.
  if (rest === '0') return { ok: true, ns: 0n };
  if (rest === '') return { ok: false, why: 'missing number' };
  let total = 0n;
  while (rest !== '') {
    const term = parseTerm(rest);
    if ('why' in term) return { ok: false, why: term.why };
    total += term.ns;
    if (total > MAX_NS) return { ok: false, why: 'too large (the limit is about 292 years)' };
    rest = rest.slice(term.length);
  }
  return { ok: true, ns: total };
}

/** Milliseconds of a Go/Compose duration; sub-millisecond units give fractions ("10us" → 0.01). */
export function parseDuration(s: string): number {
  const result = parseToNanoseconds(s);
  if (!result.ok) throw new InvalidDurationError(s, result.why);
  return nanosecondsToMilliseconds(result.ns);
}

/** Why `s` is not a duration, or undefined when it is one. For validators that must not throw. */
export function durationProblem(s: string): string | undefined {
  const result = parseToNanoseconds(s);
  return result.ok ? undefined : result.why;
}

function nanosecondsToMilliseconds(ns: bigint): number {
  const wholeMs = ns / NS_PER_MS;
  return Number(wholeMs) + Number(ns % NS_PER_MS) / 1e6;
}

/**
 * Go's Duration.String(): "1h2m3.5s", "1m30s", "500ms", "10µs", "0s". Fractions of a
 * nanosecond are rounded away.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) throw new RangeError(`formatDuration: ${ms} is not a finite number of milliseconds`);
  const ns = BigInt(Math.round(ms * 1e6));
  const sign = ns < 0n ? '-' : '';
  const abs = ns < 0n ? -ns : ns;
  return sign + formatNonNegative(abs);
}

function formatNonNegative(ns: bigint): string {
  if (ns === 0n) return '0s';
  if (ns < 1_000n) return `${ns}ns`;
  if (ns < 1_000_000n) return `${withFraction(ns, 1_000n, 3)}\u00b5s`;
  if (ns < 1_000_000_000n) return `${withFraction(ns, 1_000_000n, 6)}ms`;
  const hours = ns / 3_600_000_000_000n;
  const minutes = (ns / 60_000_000_000n) % 60n;
  const seconds = withFraction(ns % 60_000_000_000n, 1_000_000_000n, 9);
  if (hours > 0n) return `${hours}h${minutes}m${seconds}s`;
  if (minutes > 0n) return `${minutes}m${seconds}s`;
  return `${seconds}s`;
}

/** value/unit in decimal, trailing zeros of the fraction dropped ("1.5", "3", "0.25"). */
function withFraction(value: bigint, unit: bigint, digits: number): string {
  const whole = value / unit;
  const fraction = (value % unit).toString().padStart(digits, '0').replace(/0+$/, '');
  return fraction === '' ? `${whole}` : `${whole}.${fraction}`;
}
