// Errors and warnings of the Compose loader. Every message names the file, the line and
// column, and the key path, the way `docker compose config` points at a problem
// ("compose.yml:12:5: services.web.ports[1]: invalid port "80:abc"").
import { readFile } from 'node:fs/promises';

import { errnoOf } from '../errno';

/** Where a YAML node came from. `file` is the display name (as the user spelled it). */
export interface Pos {
  file: string;
  line: number;
  column: number;
}

/** Something Compose accepts that d2p does not honour: reported, never silently dropped. */
export interface ComposeWarning {
  file: string;
  /** Key path, e.g. "services.web.devices". */
  path: string;
  message: string;
  line?: number;
  column?: number;
}

export type KeyPath = readonly (string | number)[];

/** "services.web.ports[1]" from ["services", "web", "ports", 1]. */
export function formatPath(path: KeyPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

export class ComposeError extends Error {
  readonly code = 'D2P_COMPOSE_INVALID';
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
  readonly path?: string;
  /** errno name when the cause is a file system error (ENOENT, EACCES, ...). */
  readonly errno?: string;

  constructor(
    detail: string,
    where: { pos?: Pos; file?: string; path?: KeyPath; errno?: string; cause?: unknown } = {},
  ) {
    const file = where.pos?.file ?? where.file;
    const keyPath = where.path && where.path.length > 0 ? formatPath(where.path) : undefined;
    const prefix = [
      file ? (where.pos ? `${file}:${where.pos.line}:${where.pos.column}` : file) : undefined,
      keyPath,
    ].filter((p): p is string => p !== undefined);
    super(prefix.length > 0 ? `${prefix.join(': ')}: ${detail}` : detail, { cause: where.cause });
    this.name = 'ComposeError';
    this.file = file;
    this.line = where.pos?.line;
    this.column = where.pos?.column;
    this.path = keyPath;
    this.errno = where.errno;
  }
}

export { errnoOf };

/** Collects warnings; the loader returns them with the objects. */
export class WarningSink {
  readonly items: ComposeWarning[] = [];
  private readonly seen = new Set<string>();

  add(pos: Pos | undefined, path: KeyPath, message: string, fallbackFile = ''): void {
    const w: ComposeWarning = { file: pos?.file ?? fallbackFile, path: formatPath(path), message };
    if (pos) {
      w.line = pos.line;
      w.column = pos.column;
    }
    // The same node can be reached twice (a YAML alias, a service extended twice):
    // one warning per place is enough.
    const key = `${w.file}:${w.line}:${w.column}:${w.path}:${message}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.items.push(w);
  }
}

/** Reads a text file, turning file system errors into ComposeErrors that name the file. */
export async function readTextFile(abs: string, display: string, what: string): Promise<string> {
  try {
    return await readFile(abs, 'utf8');
  } catch (err) {
    const errno = errnoOf(err);
    const why = errno === 'ENOENT' ? 'no such file' : errno === 'EISDIR' ? 'is a directory' : String((err as Error).message);
    throw new ComposeError(`cannot read ${what}: ${why}${errno ? ` (${errno})` : ''}`, { file: display, errno, cause: err });
  }
}
