// Reading a watched directory as it is now: every file on its own, so that one broken file
// costs only its own objects (Flux's Kustomization fails the whole set instead; the issue
// asks for per-file isolation). Reading itself is src/cli/manifests.ts, as for `d2p apply`.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isApiError } from '../api/errors';
import { validateObject } from '../api/validate';
import { errorLines } from '../cli/format-error';
import { qualifiedName } from '../cli/kinds';
import { assignNamespaces, expandPaths, readSources, type ManifestObject } from '../cli/manifests';
import { GitOpsError } from './source';

export interface FileRead {
  /** Relative to the directory, with "/" separators. */
  path: string;
  /** Validated objects (schema defaults applied); empty when the file failed. */
  objects: ManifestObject[];
  /** Why the file's objects are left as they were; one line first, details after. */
  error?: string;
  /** Compose warnings, each naming file and key. */
  warnings: string[];
}

export interface DirectoryRead {
  /** "sha256:<hex>" over the relative paths and contents of every file, in order. */
  revision: string;
  files: FileRead[];
}

export async function readDirectory(dir: string): Promise<DirectoryRead> {
  assertDirectory(dir);
  const paths = expandPaths([dir]);
  const hash = createHash('sha256');
  const files: FileRead[] = [];
  for (const file of paths) {
    const rel = toRelative(dir, file);
    // The path is hashed too: renaming a file is a new revision even with the same bytes.
    hash.update(`${rel}\0`);
    const content = readContent(file);
    if (content === undefined) {
      // Listed, then gone: a `git checkout` or an editor's rename is under way. Its objects
      // stay for now; the unlink event that is on its way brings the next, consistent sync.
      files.push({ path: rel, objects: [], error: `${rel}: vanished while the directory was being read`, warnings: [] });
      continue;
    }
    hash.update(content);
    hash.update('\0');
    files.push(await readOneFile(dir, file, rel));
  }
  rejectDuplicates(files);
  return { revision: `sha256:${hash.digest('hex')}`, files };
}

function assertDirectory(dir: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    throw new GitOpsError(`cannot read the manifest directory ${dir}: ${(err as Error).message}`, { code: 'D2P_GITOPS_NO_DIRECTORY', cause: err });
  }
  if (!st.isDirectory()) throw new GitOpsError(`${dir} is not a directory`, { code: 'D2P_GITOPS_NO_DIRECTORY' });
}

function toRelative(dir: string, file: string): string {
  return path.relative(dir, file).split(path.sep).join('/');
}

function readContent(file: string): Buffer | undefined {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GitOpsError(`cannot read ${file}: ${(err as Error).message}`, { code: 'D2P_GITOPS_UNREADABLE', cause: err });
  }
}

async function readOneFile(dir: string, file: string, rel: string): Promise<FileRead> {
  let objects: ManifestObject[];
  let warnings: string[];
  try {
    const read = await readSources([file]);
    objects = assignNamespaces(read.objects, undefined);
    warnings = read.warnings.map((w) => relativeMessage(dir, w));
  } catch (err) {
    return { path: rel, objects: [], error: describeReadError(dir, rel, err), warnings: [] };
  }
  const problems: string[] = [];
  const validated = objects.map((m) => {
    try {
      return { ...m, object: validateObject(m.object) };
    } catch (err) {
      if (!isApiError(err, 'Invalid')) throw err;
      problems.push(`${qualifiedName(m.object.kind, m.object.metadata.name)}: ${errorLines(err).join(' ')}`);
      return m;
    }
  });
  if (problems.length > 0) return { path: rel, objects: [], error: `${rel}: ${problems.join('; ')}`, warnings };
  return { path: rel, objects: validated, warnings };
}

/**
 * The reader names files as it was given them (absolute here); the status and events name
 * them relative to the directory, which is what the user's repository calls them. A YAML
 * error gets "file:line:column" in front, as compilers and the Compose loader write it.
 */
function describeReadError(dir: string, rel: string, err: unknown): string {
  const cause = (err as { cause?: { linePos?: { line: number; col: number }[] } }).cause;
  const message = relativeMessage(dir, errorLines(err).join('\n'));
  const at = cause?.linePos?.[0];
  if (at && message.startsWith(rel)) {
    return `${rel}:${at.line}:${at.col}${message.slice(rel.length)}`;
  }
  return message.startsWith(rel) ? message : `${rel}: ${message}`;
}

function relativeMessage(dir: string, message: string): string {
  return message.split(`${dir}/`).join('');
}

/**
 * Two files describing one object: which wins would depend on file order, so the later
 * file (in walk order) fails as a whole and the first keeps the object, as `d2p apply`
 * refuses the pair.
 */
function rejectDuplicates(files: FileRead[]): void {
  const owner = new Map<string, string>();
  for (const file of files) {
    const clashes: string[] = [];
    const mine = new Set<string>();
    for (const m of file.objects) {
      const key = objectKeyOf(m.object);
      const first = owner.get(key) ?? (mine.has(key) ? file.path : undefined);
      if (first) clashes.push(`${qualifiedName(m.object.kind, m.object.metadata.name)} in namespace "${m.object.metadata.namespace}" is already defined by ${first}`);
      mine.add(key);
    }
    if (clashes.length > 0) {
      file.error = `${file.path}: ${clashes.join('; ')}`;
      file.objects = [];
      continue;
    }
    for (const key of mine) owner.set(key, file.path);
  }
}

/** "Service/shop/web": identifies an object across kinds and namespaces. */
export function objectKeyOf(obj: { kind: string; metadata: { namespace?: string; name: string } }): string {
  return `${obj.kind}/${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
}
