// The common first half of apply, diff, delete -f and convert: read every -f argument,
// convert Compose, settle namespaces, and (for writes) validate every object against the
// schemas before a single request leaves, so one bad object stops everything.
import { isApiError } from '../api/errors';
import { validateObject } from '../api/validate';
import { isUnvalidatedComposeObject, isValidatedComposeObject } from '../compose';
import { formatError } from './format-error';
import { CliError, ReportedError, type CliIO } from './io';
import { assignNamespaces, checkDuplicates, describeObject, readSources, type ManifestObject } from './manifests';

export interface SourceOptions {
  files: string[];
  /** -p: Compose project name. */
  projectName?: string;
  /** --profile, repeatable. */
  profiles?: string[];
  /** -n: namespace of manifests without one; must match those that have one. */
  namespace?: string;
}

export interface LoadOptions {
  /** Validate every object against crd-schemas/ (apply, diff). */
  validate: boolean;
  /**
   * Compose objects are left to the server, which validates everything apply sends (and
   * apply reports a refusal at its Compose source): loading the schema validators into
   * the CLI was ~30 ms of an apply of 100 services (hack/bench/controlplane.js).
   */
  serverValidatesCompose?: boolean;
  /** Exit status when objects are invalid (diff uses 2: 1 means "differences"). */
  errorExitCode?: number;
}

export async function loadObjects(source: SourceOptions, io: CliIO, opts: LoadOptions): Promise<ManifestObject[]> {
  if (source.files.length === 0) {
    throw new CliError('must specify -f FILE|DIR (Compose files or manifests)', { code: 'D2P_USAGE', exitCode: opts.errorExitCode });
  }
  const read = await readSources(source.files, { projectName: source.projectName, profiles: source.profiles, validateCompose: !opts.serverValidatesCompose });
  for (const warning of read.warnings) io.stderr.write(`warning: ${warning}\n`);
  if (read.objects.length === 0) {
    throw new CliError(`no objects passed: ${source.files.join(', ')} describe nothing`, {
      code: 'D2P_NO_OBJECTS',
      exitCode: opts.errorExitCode,
    });
  }
  const objects = assignNamespaces(read.objects, source.namespace);
  checkDuplicates(objects);
  if (opts.validate) validateAll(objects, io, opts.errorExitCode ?? 1);
  return objects;
}

/** Validates every object and reports every invalid one, naming its file and document. */
function validateAll(objects: readonly ManifestObject[], io: CliIO, exitCode: number): void {
  let invalid = 0;
  for (const m of objects) {
    // The Compose loader validated its objects already (and reported problems at their
    // Compose line); validation is deterministic, so once is enough.
    if (isValidatedComposeObject(m.object) || isUnvalidatedComposeObject(m.object)) continue;
    try {
      validateObject(m.object);
    } catch (err) {
      if (!isApiError(err)) throw err;
      invalid++;
      io.stderr.write(formatError(err, { context: describeObject(m) }));
    }
  }
  if (invalid > 0) {
    throw new ReportedError(`${invalid} of ${objects.length} objects are invalid; nothing was applied`, exitCode);
  }
}
