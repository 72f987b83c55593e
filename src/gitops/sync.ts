// One sync: the whole directory as it is now, applied; what it no longer has, pruned; what
// was changed behind its back, put back; and the Source's status and Events saying so.
// Level-triggered like a reconciler (DESIGN.md §3): it depends only on the directory and
// the live objects, so a missed file event or a restart costs nothing but a wait.
import { isApiError } from '../api/errors';
import type { ApiObject } from '../api/meta';
import type { Source, SourceFileStatus, SourceStatus } from '../api/types';
import type { Client } from '../client/types';
import { errorLines } from '../cli/format-error';
import { qualifiedName } from '../cli/kinds';
import { setCondition } from '../../controllers/conditions';
import type { EventRecorder } from '../../controllers/events';
import { applyDesired, desiredObjects, listSet, prune, pruneCandidates, type AppliedObject, type DesiredObject } from './apply-set';
import { gitCommit } from './git';
import { readDirectory, type DirectoryRead } from './read-dir';
import { ensureSource, SOURCE_DIGEST_ANNOTATION } from './source';

export interface SyncInput {
  client: Client;
  recorder: EventRecorder;
  /** The Source as this watcher wants it (spec.path absolute). */
  source: Source;
  /** Digest of each object applied by the previous sync of this process, by key. */
  previous: ReadonlyMap<string, string>;
  log: (line: string) => void;
}

export interface FileError {
  path: string;
  error: string;
}

export interface SyncReport {
  revision?: string;
  gitCommit?: string;
  /** "service/web" of every object created or changed. */
  applied: string[];
  unchanged: number;
  pruned: string[];
  /** Objects changed or deleted through the API and put back. */
  driftCorrected: string[];
  fileErrors: FileError[];
  /** Set when the sync as a whole failed (directory unreadable, daemon gone). */
  error?: string;
  /** Every object of the set as the server holds it after this sync, by key. */
  objects: Map<string, AppliedObject>;
  /** Every file read, with its object count or its error (Source.status.files). */
  files: SourceFileStatus[];
}

export async function syncSource(input: SyncInput): Promise<SyncReport> {
  const source = await ensureSource(input.client, input.source);
  let report: SyncReport;
  try {
    report = await applyDirectory(input, source);
  } catch (err) {
    // Unreachable daemon, unreadable directory: nothing was decided, nothing is pruned.
    const message = errorLines(err).join(' ');
    report = { ...emptyReport(), error: message };
    await input.recorder.record(source, 'Warning', 'SyncFailed', message);
    await writeStatus(input.client, source, failedStatus(message));
    return report;
  }
  await recordEvents(input.recorder, source, report);
  await writeStatus(input.client, source, syncedStatus(report, source));
  return report;
}

function emptyReport(): SyncReport {
  return { applied: [], unchanged: 0, pruned: [], driftCorrected: [], fileErrors: [], objects: new Map(), files: [] };
}

async function applyDirectory(input: SyncInput, source: Source): Promise<SyncReport> {
  const dir = source.spec!.path;
  const read = await readDirectory(dir);
  const commit = await commitOrWarn(input, source, dir);
  const name = source.metadata.name;
  const liveBefore = await listSet(input.client, name);
  const desired = desiredObjects(read.files, name);
  const outcome = await applyDesired(input.client, desired);

  const failed = new Map<string, string>();
  for (const f of read.files) if (f.error) failed.set(f.path, f.error);
  for (const [file, error] of outcome.failedFiles) failed.set(file, error);

  const report: SyncReport = {
    ...emptyReport(),
    revision: read.revision,
    gitCommit: commit,
    fileErrors: [...failed].map(([path, error]) => ({ path, error })),
    objects: new Map(outcome.applied.map((a) => [a.key, a])),
    files: perFile(read, desired, failed),
  };
  for (const a of outcome.applied) {
    if (a.action === 'unchanged') report.unchanged++;
    else report.applied.push(nameOf(a.object));
    if (isDrift(a, liveBefore.get(a.key), input.previous.get(a.key))) report.driftCorrected.push(nameOf(a.object));
  }
  if (source.spec!.prune !== false) {
    const desiredKeys = new Set(desired.map((d) => d.key));
    const result = await prune(input.client, pruneCandidates(liveBefore, desiredKeys, new Set(failed.keys())));
    report.pruned = result.pruned.map(nameOf);
    for (const error of result.errors) report.fileErrors.push({ path: '', error });
  }
  return report;
}

/**
 * Drift: the write changed an object although the directory's version of it did not change
 * since it was last applied — the live object still carries the same digest (someone edited
 * it through the API), or this process applied that digest before and the object has since
 * been deleted or lost its label.
 */
function isDrift(applied: AppliedObject, before: ApiObject | undefined, previousDigest: string | undefined): boolean {
  if (applied.action === 'unchanged') return false;
  const liveDigest = before?.metadata.annotations?.[SOURCE_DIGEST_ANNOTATION];
  if (before) return liveDigest === applied.digest;
  return previousDigest === applied.digest;
}

/** A git error must not stop the directory from being applied: it is reported, and the commit left out. */
async function commitOrWarn(input: SyncInput, source: Source, dir: string): Promise<string | undefined> {
  try {
    return await gitCommit(dir);
  } catch (err) {
    const message = errorLines(err).join(' ');
    input.log(message);
    await input.recorder.record(source, 'Warning', 'GitCommitUnknown', message);
    return undefined;
  }
}

function perFile(read: DirectoryRead, desired: readonly DesiredObject[], failed: ReadonlyMap<string, string>): SourceFileStatus[] {
  return read.files.map((f) => {
    const error = failed.get(f.path);
    if (error !== undefined) return { path: f.path, objects: 0, error };
    return { path: f.path, objects: desired.filter((d) => d.file === f.path).length };
  });
}

function nameOf(obj: ApiObject): string {
  return `${qualifiedName(obj.kind, obj.metadata.name)}${obj.metadata.namespace ? ` -n ${obj.metadata.namespace}` : ''}`;
}

// ------------------------------------------------------------------------------ events

async function recordEvents(recorder: EventRecorder, source: Source, report: SyncReport): Promise<void> {
  for (const f of report.fileErrors) await recorder.record(source, 'Warning', f.path ? 'InvalidFile' : 'PruneFailed', f.error);
  for (const name of report.driftCorrected) {
    await recorder.record(source, 'Warning', 'DriftCorrected', `${name} was changed through the API; put back to the directory's version`);
  }
  if (report.pruned.length > 0) await recorder.record(source, 'Normal', 'Pruned', `no longer in the directory, deleted: ${report.pruned.join(', ')}`);
}

// ------------------------------------------------------------------------------ status

type StatusPatch = Omit<SourceStatus, 'conditions' | 'observedGeneration'> & { ready: { status: 'True' | 'False'; reason: string; message: string } };

function syncedStatus(report: SyncReport, source: Source): StatusPatch {
  const files = report.files;
  const errors = report.fileErrors.length;
  const objects = report.objects.size;
  return {
    phase: errors === 0 ? 'Synced' : 'Degraded',
    lastAppliedRevision: report.revision,
    gitCommit: report.gitCommit,
    lastSyncTime: new Date().toISOString(),
    files,
    ready:
      errors === 0
        ? { status: 'True', reason: 'Synced', message: `${objects} objects applied from ${source.spec!.path}` }
        : { status: 'False', reason: 'FileErrors', message: `${errors} of ${files.length} files failed and were left as they were: ${report.fileErrors.map((f) => f.path || f.error).join(', ')}` },
  };
}

function failedStatus(message: string): StatusPatch {
  return { phase: 'Failed', lastSyncTime: new Date().toISOString(), ready: { status: 'False', reason: 'SyncFailed', message } };
}

/** Writes the status on the freshest Source; once more on a Conflict with another writer. */
async function writeStatus(client: Client, source: Source, patch: StatusPatch): Promise<void> {
  const sources = client.for('Source');
  let current = source;
  for (let attempt = 1; ; attempt++) {
    const { ready, ...fields } = patch;
    // A failed sync keeps what the last good one applied: that is still what runs.
    const status: SourceStatus = { ...current.status, ...dropUndefined(fields), observedGeneration: current.metadata.generation };
    if (patch.phase !== 'Failed' && patch.gitCommit === undefined) delete status.gitCommit;
    status.conditions = (current.status?.conditions ?? []).map((c) => ({ ...c }));
    setCondition(status, { type: 'Ready', ...ready, observedGeneration: current.metadata.generation });
    try {
      await sources.updateStatus({ ...current, status });
      return;
    } catch (err) {
      if (!isApiError(err, 'Conflict') || attempt >= 2) throw err;
      current = await sources.get(source.metadata.namespace, source.metadata.name);
    }
  }
}

function dropUndefined<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** `synced rev abc1234: 5 applied, 1 pruned, 1 error (bad.yaml:3:1: …)` — what `d2p watch` prints per sync. */
export function formatSyncLine(report: SyncReport): string {
  if (report.error !== undefined) return `sync failed: ${report.error}`;
  const rev = shortRevision(report.revision);
  const parts = [`${report.applied.length} applied`, `${report.pruned.length} pruned`];
  if (report.driftCorrected.length > 0) parts.push(`${report.driftCorrected.length} drift corrected`);
  const errors = report.fileErrors.length;
  let line = `synced rev ${rev}${report.gitCommit ? ` (commit ${report.gitCommit.slice(0, 7)})` : ''}: ${parts.join(', ')}`;
  if (errors > 0) {
    const first = report.fileErrors.map((f) => f.error.split('\n')[0]).join('; ');
    line += `, ${errors} error${errors === 1 ? '' : 's'} (${first})`;
  }
  return line;
}

/** "sha256:0123abc…" → "0123abc", as git abbreviates commits. */
export function shortRevision(revision: string | undefined): string {
  if (!revision) return '';
  return revision.slice(revision.indexOf(':') + 1, revision.indexOf(':') + 8);
}
