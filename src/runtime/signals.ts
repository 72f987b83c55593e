// Signal names as Docker accepts them ("SIGTERM", "TERM", "15") → numbers.
import * as os from 'node:os';

/** A signal name or number that is not one. */
export class SignalError extends Error {
  readonly code = 'D2P_INVALID_SIGNAL';
}

export function signalNumber(signal: string | number): number {
  if (typeof signal === 'number') return checkRange(signal, String(signal));
  const text = signal.trim().toUpperCase();
  if (/^\d+$/.test(text)) return checkRange(Number(text), signal);
  const name = (text.startsWith('SIG') ? text : `SIG${text}`) as keyof typeof os.constants.signals;
  const value = os.constants.signals[name];
  if (value === undefined) throw new SignalError(`unknown signal "${signal}"`);
  return value;
}

/** Whether signalNumber() takes it. */
export function isKnownSignal(signal: string): boolean {
  try {
    signalNumber(signal);
    return true;
  } catch (error) {
    if (error instanceof SignalError) return false;
    throw error;
  }
}

function checkRange(n: number, original: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new SignalError(`invalid signal "${original}"`);
  return n;
}

export function signalName(n: number): string {
  const entry = Object.entries(os.constants.signals).find(([, v]) => v === n);
  return entry ? entry[0] : String(n);
}
