// Compose → manifests, driven by the fixtures in test/fixtures/compose/<case>/:
//   compose.yml (and any other files the case needs), case.yaml (optional: files, env,
//   profiles, projectName, workingDir), and either expected.yaml (the manifests, one YAML
//   document per object, with <projectDir> for the case's directory) plus an optional
//   expected-warnings.yaml, or expected-error.txt (the error message).
// Each case runs on a copy in its own temporary directory, named like the case so that a
// project name derived from the directory is the case's name.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { validateObject } from '../../src/api/validate';
import { ComposeError, loadCompose, type LoadComposeOptions } from '../../src/compose';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'compose');
const cases = fs.readdirSync(FIXTURES).filter((name) => fs.statSync(path.join(FIXTURES, name)).isDirectory()).sort();

interface CaseOptions {
  files?: string[];
  env?: Record<string, string>;
  profiles?: string[];
  projectName?: string;
  workingDir?: string;
}

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-compose-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function copyCase(name: string): string {
  const dir = path.join(tmp, name);
  fs.cpSync(path.join(FIXTURES, name), dir, { recursive: true });
  return dir;
}

function readOptional(file: string): string | undefined {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
}

/** The case's directory becomes "<projectDir>", so expected files do not depend on where tests run. */
function portable<T>(value: T, dir: string): T {
  return JSON.parse(JSON.stringify(value).split(dir).join('<projectDir>')) as T;
}

function optionsFor(dir: string): LoadComposeOptions {
  const spec = (parse(readOptional(path.join(dir, 'case.yaml')) ?? '{}') ?? {}) as CaseOptions;
  return {
    files: (spec.files ?? ['compose.yml']).map((f) => path.join(dir, f)),
    env: spec.env ?? {},
    profiles: spec.profiles,
    projectName: spec.projectName,
    workingDir: spec.workingDir === undefined ? undefined : path.join(dir, spec.workingDir),
  };
}

describe('compose fixtures', () => {
  it('has cases', () => {
    expect(cases.length).toBeGreaterThan(10);
  });

  for (const name of cases) {
    it(name, async () => {
      const dir = copyCase(name);
      const expectedError = readOptional(path.join(dir, 'expected-error.txt'));
      const run = loadCompose(optionsFor(dir));
      if (expectedError !== undefined) {
        const err = await run.then(
          (r) => new Error(`expected an error, got ${r.objects.length} objects`),
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ComposeError);
        expect((err as ComposeError).code).toBe('D2P_COMPOSE_INVALID');
        expect(portable((err as ComposeError).message, dir)).toBe(expectedError.trim());
        return;
      }
      const result = await run;
      const expected = parseAllDocuments(fs.readFileSync(path.join(dir, 'expected.yaml'), 'utf8')).map((d) => d.toJS());
      expect(portable(result.objects, dir)).toEqual(expected);
      const warnings = parse(readOptional(path.join(dir, 'expected-warnings.yaml')) ?? '[]') ?? [];
      expect(portable(result.warnings, dir)).toEqual(warnings);
      for (const object of result.objects) expect(() => validateObject(object)).not.toThrow();
    });
  }
});
