// Project-level settings, with Docker Compose's precedence rules
// (docs.docker.com/compose: "Specify a project name", "Set environment variables",
// "Use profiles"):
// - interpolation variables: the shell environment wins over the project's `.env`;
// - project name: -p, then COMPOSE_PROJECT_NAME, then top-level `name:`, then the
//   project directory's name normalised; an explicit name must already be valid;
// - profiles: the ones asked for, else COMPOSE_PROFILES; "*" enables every profile.
import { access } from 'node:fs/promises';
import * as path from 'node:path';
import { ComposeError, errnoOf, readTextFile, type Pos } from './errors';
import { parseDotenv } from './dotenv';

export type Env = Record<string, string>;

/** The shell environment (process.env unless one is given), without its undefined entries. */
export function processEnvironment(given: Record<string, string | undefined> = process.env): Env {
  return Object.fromEntries(Object.entries(given).filter((e): e is [string, string] => e[1] !== undefined));
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw err;
  }
}

/** The project's `.env` (if any) under the shell environment, which wins. */
export async function interpolationEnvironment(projectDir: string, shell: Env, display: (abs: string) => string): Promise<Env> {
  const file = path.join(projectDir, '.env');
  if (!(await exists(file))) return { ...shell };
  const text = await readTextFile(file, display(file), '.env file');
  const dotenv: Env = {};
  for (const { key, value } of parseDotenv(text, display(file), (k) => shell[k])) dotenv[key] = value;
  return { ...dotenv, ...shell };
}

const VALID_PROJECT_NAME = /^[a-z0-9][a-z0-9_-]*$/;

/** compose-go NormalizeProjectName: lowercase, keep [a-z0-9_-], no leading "_" or "-". */
export function normalizeProjectName(name: string): string {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, '')
    .replace(/^[_-]+/, '');
}

export interface NameSources {
  explicit?: string;
  env: Env;
  /** Top-level `name:` of the merged files, and where it was written. */
  fromFile?: { value: string; pos: Pos };
  projectDir: string;
}

export function resolveProjectName(src: NameSources): string {
  const check = (name: string, origin: string, pos?: Pos) => {
    if (!VALID_PROJECT_NAME.test(name)) {
      throw new ComposeError(
        `invalid project name ${JSON.stringify(name)} (from ${origin}): must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number`,
        pos ? { pos, path: ['name'] } : {},
      );
    }
    return name;
  };
  if (src.explicit !== undefined && src.explicit !== '') return check(src.explicit, 'the project name option');
  const fromEnv = src.env.COMPOSE_PROJECT_NAME;
  if (fromEnv) return check(fromEnv, 'COMPOSE_PROJECT_NAME');
  if (src.fromFile && src.fromFile.value !== '') return check(src.fromFile.value, 'the top-level name', src.fromFile.pos);
  const derived = normalizeProjectName(path.basename(src.projectDir));
  if (derived === '') {
    throw new ComposeError(`cannot derive a project name from the directory ${JSON.stringify(src.projectDir)}: set one with name: or -p`);
  }
  return derived;
}

export function activeProfiles(requested: readonly string[] | undefined, env: Env): Set<string> {
  const names = requested && requested.length > 0 ? requested : (env.COMPOSE_PROFILES ?? '').split(',');
  return new Set(names.map((n) => n.trim()).filter((n) => n !== ''));
}

export function profileEnabled(profiles: readonly string[], active: ReadonlySet<string>): boolean {
  return profiles.length === 0 || active.has('*') || profiles.some((p) => active.has(p));
}
