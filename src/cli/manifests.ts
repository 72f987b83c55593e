// What `-f FILE|DIR` means for apply, delete, diff and convert: Compose files and
// manifests (multi-document YAML, or JSON), directories read recursively. Every object
// keeps where it came from, so an error can name the file and the document.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ApiObject } from '../api/meta';
import { DEFAULT_NAMESPACE } from '../api/meta';
import { ComposeError, isComposeFile, loadCompose, type ComposeProject } from '../compose';
import { CliError } from './io';
import { qualifiedName } from './kinds';

/** Where an object was read from; `document` counts from 1 within a multi-document file. */
export interface SourceRef {
  file: string;
  document?: number;
  /** Index inside a `kind: List` document. */
  item?: number;
  /** Compose: the Compose file(s) the object was converted from. */
  compose?: boolean;
}

export interface ManifestObject {
  object: ApiObject;
  source: SourceRef;
}

export interface ReadOptions {
  /** Compose project name (-p); otherwise the loader's rule (name: key, then directory). */
  projectName?: string;
  profiles?: string[];
  /** Environment for Compose interpolation; process.env when omitted. */
  env?: Record<string, string>;
  /** Reads `-f -`; process stdin when omitted. */
  readStdin?: () => string;
  /** Validate Compose objects while converting (default); false leaves them to the server (apply). */
  validateCompose?: boolean;
}

export interface ReadResult {
  objects: ManifestObject[];
  /** Compose warnings, each already naming file and key. */
  warnings: string[];
}

/** One problem found while reading; all are collected so the user sees every one at once. */
export class ManifestError extends CliError {
  constructor(
    readonly source: SourceRef,
    detail: string,
    cause?: unknown,
  ) {
    super(`${describeSource(source)}: ${detail}`, { code: 'D2P_MANIFEST_INVALID', cause });
    this.name = 'ManifestError';
  }
}

/** "compose.yml", "app.yaml (document 2)", "list.json (document 1, item 3)". */
export function describeSource(source: SourceRef): string {
  const where: string[] = [];
  if (source.document !== undefined) where.push(`document ${source.document}`);
  if (source.item !== undefined) where.push(`item ${source.item}`);
  return where.length === 0 ? source.file : `${source.file} (${where.join(', ')})`;
}

/** "app.yaml (document 2): service/web" — how errors about one object start. */
export function describeObject(m: ManifestObject): string {
  const name = m.object.metadata?.name;
  const what = name ? qualifiedName(m.object.kind, name) : (m.object.kind ?? 'object');
  return `${describeSource(m.source)}: ${what}`;
}

// ------------------------------------------------------------------------------ files

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/**
 * Expands -f arguments into files. A directory is walked depth-first with entries in
 * lexical order, as kubectl's `-f DIR -R` (Go's filepath.Walk) does, keeping only
 * .yaml/.yml/.json files. Hidden entries (".git") are skipped: a GitOps checkout must not
 * apply what version control keeps there. Symlinked directories are not followed, as
 * filepath.Walk does not, so a link loop cannot make us spin.
 */
export function expandPaths(args: readonly string[]): string[] {
  const files: string[] = [];
  for (const arg of args) {
    if (arg === '-') {
      files.push(arg);
      continue;
    }
    const st = statOrThrow(arg);
    if (st.isDirectory()) walkDirectory(arg, files);
    else files.push(arg);
  }
  return files;
}

function statOrThrow(p: string): fs.Stats {
  try {
    return fs.statSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CliError(`the path "${p}" does not exist`, { code: 'D2P_PATH_NOT_FOUND', cause: err });
    throw new CliError(`cannot read "${p}": ${(err as Error).message}`, { code: 'D2P_PATH_UNREADABLE', cause: err });
  }
}

function walkDirectory(dir: string, out: string[]): void {
  const entries = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walkDirectory(full, out);
    else if (MANIFEST_EXTENSIONS.has(path.extname(entry.name).toLowerCase()) && isRegularFile(full, entry)) out.push(full);
  }
}

function isRegularFile(full: string, entry: fs.Dirent): boolean {
  if (entry.isFile()) return true;
  return entry.isSymbolicLink() && statOrThrow(full).isFile();
}

// ------------------------------------------------------------------------------ parsing

interface ParsedFile {
  file: string;
  text: string;
  /** Parsed documents; null for an empty document. */
  documents: unknown[];
}

function readText(file: string, opts: ReadOptions): string {
  if (file === '-') return opts.readStdin ? opts.readStdin() : fs.readFileSync(0, 'utf8');
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ManifestError({ file }, `cannot read: ${(err as Error).message}`, err);
  }
}

/**
 * A .json file is one JSON document (JSON.parse's errors are the clearer ones for it);
 * anything else is YAML, one or more documents — JSON is valid YAML 1.2, so `-f -` may be either.
 */
export function parseDocuments(file: string, text: string): unknown[] {
  if (path.extname(file).toLowerCase() === '.json') {
    try {
      return [JSON.parse(text)];
    } catch (err) {
      throw new ManifestError({ file }, `invalid JSON: ${(err as Error).message}`, err);
    }
  }
  const YAML = require('yaml') as typeof import('yaml');
  const docs = YAML.parseAllDocuments(text, { prettyErrors: true });
  const list = Array.isArray(docs) ? docs : [docs];
  return list.map((doc, i) => {
    const first = doc.errors[0];
    if (first) throw new ManifestError({ file, document: i + 1 }, `invalid YAML: ${first.message}`, first);
    return doc.toJS({ maxAliasCount: 1000 });
  });
}

function parseFile(file: string, opts: ReadOptions): ParsedFile {
  const text = readText(file, opts);
  return { file, text, documents: parseDocuments(file, text) };
}

/** A manifest document (or a List item) as an API object, or a clear reason why not. */
function toApiObject(value: unknown, source: SourceRef): ApiObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ManifestError(source, 'not an object: expected a mapping with apiVersion, kind and metadata');
  }
  const obj = value as Record<string, unknown>;
  const missing = ['apiVersion', 'kind'].filter((k) => typeof obj[k] !== 'string' || obj[k] === '');
  if (missing.length > 0) throw new ManifestError(source, `${missing.join(' and ')} not set`);
  const meta = obj.metadata;
  if (typeof meta !== 'object' || meta === null || typeof (meta as { name?: unknown }).name !== 'string') {
    throw new ManifestError(source, `${String(obj.kind)}: metadata.name not set`);
  }
  return obj as unknown as ApiObject;
}

/** Objects of one manifest file; `kind: List` documents are expanded as kubectl does. */
function manifestObjects(parsed: ParsedFile): ManifestObject[] {
  const out: ManifestObject[] = [];
  parsed.documents.forEach((doc, i) => {
    if (doc === null || doc === undefined) return; // "---" followed by nothing, as kubectl skips it
    const source: SourceRef = parsed.documents.length > 1 ? { file: parsed.file, document: i + 1 } : { file: parsed.file };
    const record = doc as Record<string, unknown>;
    if (typeof doc === 'object' && record.kind === 'List' && Array.isArray(record.items)) {
      record.items.forEach((item, j) => {
        const itemSource = { ...source, item: j + 1 };
        out.push({ object: toApiObject(item, itemSource), source: itemSource });
      });
      return;
    }
    out.push({ object: toApiObject(doc, source), source });
  });
  return out;
}

// ------------------------------------------------------------------------------ Compose

/** Compose by its file name (compose.yaml, docker-compose.yml…) without reading it. */
function isComposeByName(file: string): boolean {
  return file !== '-' && isComposeFile(file);
}

/** Compose by its content: a single mapping with `services` and no apiVersion/kind. */
function isComposeByContent(parsed: ParsedFile): boolean {
  return parsed.file !== '-' && parsed.documents.length === 1 && isComposeFile(parsed.file, parsed.documents[0]);
}

async function loadComposeGroup(files: string[], opts: ReadOptions): Promise<ReadResult> {
  let result: ComposeProject;
  try {
    result = await loadCompose({ files, projectName: opts.projectName, env: opts.env, profiles: opts.profiles, validate: opts.validateCompose });
  } catch (err) {
    // ComposeError messages already start with file:line:column and the key path.
    if (err instanceof ComposeError) throw new CliError(err.message, { code: err.code, cause: err });
    throw err;
  }
  const source: SourceRef = { file: files.join(', '), compose: true };
  return {
    objects: result.objects.map((object) => ({ object, source })),
    warnings: result.warnings.map(formatComposeWarning),
  };
}

/** "compose.yml:12:5: services.web.devices: not supported, ignored" — the key is always named. */
export function formatComposeWarning(w: { file: string; path: string; message: string; line?: number; column?: number }): string {
  const at = w.line !== undefined ? `${w.file}:${w.line}:${w.column ?? 1}` : w.file;
  return `${at}: ${w.path}: ${w.message}`;
}

// ------------------------------------------------------------------------------ reading

/**
 * Reads every -f argument. Compose files named on the command line form one project, in
 * order, as `docker compose -f a.yml -f b.yml` merges them; a Compose file found while
 * walking a directory is a project of its own (a GitOps tree holds several apps).
 * Throws on the first unreadable file; per-object problems are left to the caller.
 */
export async function readSources(args: readonly string[], opts: ReadOptions = {}): Promise<ReadResult> {
  const result: ReadResult = { objects: [], warnings: [] };
  const explicitCompose: string[] = [];
  let composeInsertAt = -1;
  for (const arg of args) {
    const fromDirectory = arg !== '-' && statOrThrow(arg).isDirectory();
    for (const file of expandPaths([arg])) {
      // Compose files are recognised by name before parsing: Compose YAML has tags
      // (!reset, !override) and merge keys a plain YAML read would not understand.
      const parsed = isComposeByName(file) ? undefined : parseFile(file, opts);
      if (parsed && !isComposeByContent(parsed)) {
        result.objects.push(...manifestObjects(parsed));
      } else if (fromDirectory) {
        append(result, await loadComposeGroup([file], opts));
      } else {
        if (composeInsertAt < 0) composeInsertAt = result.objects.length;
        explicitCompose.push(file);
      }
    }
  }
  if (explicitCompose.length > 0) {
    const group = await loadComposeGroup(explicitCompose, opts);
    result.objects.splice(composeInsertAt, 0, ...group.objects);
    result.warnings.push(...group.warnings);
  }
  return result;
}

function append(into: ReadResult, more: ReadResult): void {
  into.objects.push(...more.objects);
  into.warnings.push(...more.warnings);
}

/**
 * Sets each object's namespace: a manifest without one gets -n (or "default"); one that
 * names a namespace other than an explicit -n is refused, as kubectl refuses it
 * ("the namespace from the provided object does not match").
 */
export function assignNamespaces(objects: ManifestObject[], namespace: string | undefined): ManifestObject[] {
  return objects.map((m) => {
    const own = m.object.metadata.namespace;
    if (own && namespace && own !== namespace) {
      throw new ManifestError(
        m.source,
        `the namespace from the provided object "${own}" does not match the namespace "${namespace}" (${qualifiedName(m.object.kind, m.object.metadata.name)}); pass -n ${own} or remove the flag`,
      );
    }
    if (own) return m;
    const object = { ...m.object, metadata: { ...m.object.metadata, namespace: namespace ?? DEFAULT_NAMESPACE } };
    return { ...m, object };
  });
}

/** Refuses two definitions of one object: which one wins would depend on file order. */
export function checkDuplicates(objects: readonly ManifestObject[]): void {
  const seen = new Map<string, ManifestObject>();
  for (const m of objects) {
    const key = `${m.object.kind}/${m.object.metadata.namespace ?? ''}/${m.object.metadata.name}`;
    const first = seen.get(key);
    if (first) {
      throw new ManifestError(m.source, `${qualifiedName(m.object.kind, m.object.metadata.name)} in namespace "${m.object.metadata.namespace}" is already defined by ${describeSource(first.source)}`);
    }
    seen.set(key, m);
  }
}
