// Docker Compose → d2p manifests. `loadCompose` reads the -f files of one project the way
// Docker Compose v2 does (merge, interpolation, .env, profiles, extends) and returns the
// objects `d2p apply` stores, with warnings for what d2p does not implement. Nothing is
// returned on error: the error names the file, line:column and key path.
import * as os from 'node:os';
import * as path from 'node:path';
import { isApiError } from '../api/errors';
import type { ApiObject } from '../api/meta';
import { validateObject } from '../api/validate';
import { convertProject, type Produced } from './convert';
import { ComposeError, WarningSink, type ComposeWarning, type Pos } from './errors';
import { substitute, TemplateError } from './interpolate';
import { loadProjectFile, type LoadContext } from './loader';
import { readTextFile } from './errors';
import { enforceUnicity, mergeDocuments } from './merge';
import { parseComposeYaml, withParseReuse } from './node';
import { interpolationEnvironment, processEnvironment, resolveProjectName, type Env } from './project';

export { ComposeError, type ComposeWarning } from './errors';
export { imageObjectName } from './convert';
export { normalizeProjectName } from './project';

export interface LoadComposeOptions {
  /** -f files, merged in order; relative paths are relative to the current directory. */
  files: string[];
  /** -p; else COMPOSE_PROJECT_NAME, the top-level `name:`, or the project directory's name. */
  projectName?: string;
  /** The shell environment. Defaults to process.env; when given, process.env is not read. */
  env?: Record<string, string | undefined>;
  /** --profile; else COMPOSE_PROFILES. */
  profiles?: string[];
  /** --project-directory; defaults to the first file's directory. */
  workingDir?: string;
  /**
   * Validate the objects against the API's schemas here (default). `d2p apply` turns it
   * off: the server validates every object of the apply anyway, and composeSourceError
   * then places a refusal at its Compose source, as this validation would have.
   */
  validate?: boolean;
}

export interface ComposeProject {
  project: string;
  objects: ApiObject[];
  warnings: ComposeWarning[];
}

export function loadCompose(opts: LoadComposeOptions): Promise<ComposeProject> {
  return withParseReuse(() => load(opts));
}

async function load(opts: LoadComposeOptions): Promise<ComposeProject> {
  if (opts.files.length === 0) throw new ComposeError('no compose file given');
  const files = opts.files.map((f) => path.resolve(f));
  const projectDir = path.resolve(opts.workingDir ?? path.dirname(files[0]));
  const display = displayName(projectDir);
  const env = await interpolationEnvironment(projectDir, processEnvironment(opts.env), display);
  const project = await projectName(opts, env, files, projectDir, display);
  // Compose makes the project name available to interpolation.
  env.COMPOSE_PROJECT_NAME ??= project;
  const warnings = new WarningSink();
  const ctx: LoadContext = { env, projectDir, warnings, display };
  const roots = [];
  for (const file of files) roots.push((await loadProjectFile(file, ctx)).root);
  const merged = roots.reduce((a, b) => mergeDocuments(a, b));
  enforceUnicity(merged);
  const produced = await convertProject(merged, { project, projectDir, env, home: env.HOME ?? os.homedir(), profiles: opts.profiles, warnings, display });
  if (opts.validate === false) for (const p of produced) unvalidatedSources.set(p.object, p);
  else produced.forEach(validateProduced);
  return { project, objects: produced.map((p) => p.object), warnings: warnings.items };
}

/** Files inside the project directory are named relative to it, others absolutely. */
function displayName(projectDir: string): (abs: string) => string {
  return (abs) => {
    const rel = path.relative(projectDir, abs);
    return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : abs;
  };
}

/** The name decides ${COMPOSE_PROJECT_NAME}, so `name:` is read before the files are interpolated. */
async function projectName(opts: LoadComposeOptions, env: Env, files: string[], projectDir: string, display: (abs: string) => string): Promise<string> {
  if (opts.projectName || env.COMPOSE_PROJECT_NAME) return resolveProjectName({ explicit: opts.projectName, env, projectDir });
  let fromFile: { value: string; pos: Pos } | undefined;
  for (const file of files) {
    const text = await readTextFile(file, display(file), 'compose file');
    for (const doc of parseComposeYaml(text, display(file))) {
      const name = doc.entries.get('name')?.value;
      if (name?.kind !== 'scalar' || typeof name.value !== 'string') continue;
      try {
        fromFile = { value: substitute(name.value, { lookup: (k) => env[k] }), pos: name.pos };
      } catch (err) {
        if (err instanceof TemplateError) throw new ComposeError(err.message, { pos: name.pos, path: ['name'] });
        throw err;
      }
    }
  }
  return resolveProjectName({ env, fromFile, projectDir });
}

/**
 * Objects loadCompose returned after validating them. `d2p apply` validates everything it
 * sends; these it may skip, as long as they are still the very objects checked here (and
 * nothing changes a returned object: a namespaced copy is a new object, checked again).
 */
const validatedObjects = new WeakSet<object>();

/** True for an object loadCompose produced and validated, unchanged since. */
export function isValidatedComposeObject(obj: object): boolean {
  return validatedObjects.has(obj);
}

/** The API's own validation, as `d2p apply` will run it, reported at the Compose source. */
function validateProduced(p: Produced): void {
  try {
    validateObject(p.object);
    validatedObjects.add(p.object);
  } catch (err) {
    throw composeInvalid(p, err) ?? err;
  }
}

function composeInvalid(p: Produced, err: unknown): ComposeError | undefined {
  return isApiError(err, 'Invalid') ? new ComposeError(err.message, { pos: p.pos, path: p.path, cause: err }) : undefined;
}

/** Objects of loads with `validate: false`, and where in the Compose files they come from. */
const unvalidatedSources = new WeakMap<object, Produced>();

/** True for an object a load produced without validating it: the server is to validate it. */
export function isUnvalidatedComposeObject(obj: object): boolean {
  return unvalidatedSources.has(obj);
}

/**
 * The server's refusal of an object that a load with `validate: false` produced, as a
 * ComposeError at its Compose file, line and key: the message local validation gives.
 * Undefined for other objects and other errors.
 */
export function composeSourceError(obj: object, err: unknown): ComposeError | undefined {
  const source = unvalidatedSources.get(obj);
  return source && composeInvalid(source, err);
}

const COMPOSE_FILE_NAME = /^(?:docker-)?compose(?:\.override)?\.ya?ml$/;

/**
 * True for compose.y(a)ml / docker-compose.y(a)ml (and their .override variants), or for a
 * parsed YAML mapping with top-level `services` and no `kind`/`apiVersion` (a manifest has those).
 */
export function isComposeFile(file: string, parsed?: unknown): boolean {
  if (COMPOSE_FILE_NAME.test(path.basename(file))) return true;
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return false;
  const doc = parsed as Record<string, unknown>;
  return 'services' in doc && !('kind' in doc) && !('apiVersion' in doc);
}
