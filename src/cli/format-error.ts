// How an error reads on stderr. ApiErrors carry the server's message (a Kubernetes Status);
// Invalid ones list every cause on its own line, as kubectl does
// ("The Service "web" is invalid:\n* spec.replicas: ..."), so a user sees all problems at once.
import { ApiError } from '../api/errors';

/** The message lines of an error, without the "error: " prefix. */
export function errorLines(err: unknown): string[] {
  if (err instanceof ApiError) return apiErrorLines(err);
  if (err instanceof Error) return [err.message];
  return [String(err)];
}

function apiErrorLines(err: ApiError): string[] {
  const causes = err.details?.causes ?? [];
  if (err.reason !== 'Invalid' || causes.length === 0) return [err.message];
  const { kind, name } = err.details ?? {};
  const header = kind && name ? `${kind} "${name}" is invalid:` : 'invalid object:';
  return [header, ...causes.map((c) => `  * ${c.field ? `${c.field}: ` : ''}${c.message}`)];
}

/** `error: <message>` (continuation lines indented), plus the stack when debugging. */
export function formatError(err: unknown, opts: { debug?: boolean; context?: string } = {}): string {
  const lines = errorLines(err);
  const first = opts.context ? `${opts.context}: ${lines[0]}` : lines[0];
  let out = `error: ${[first, ...lines.slice(1)].join('\n')}\n`;
  if (opts.debug && err instanceof Error && err.stack) out += `${err.stack}\n`;
  return out;
}
