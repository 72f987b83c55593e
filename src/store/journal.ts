// The intent journal of earlier versions of the store, and the entries the write-ahead log
// (wal.ts) shares with it: one object file's new content, or its removal.
//
// Earlier versions made a batch atomic with a journal: before the first object file of a
// batch was touched, the list of its writes was made durable as one journal file, removed
// once every object file was. A store one of them left after a crash may still hold such
// a journal: on open its writes are replayed (each is idempotent: the whole new content of
// a file, or its removal) and the journal removed. A batch is now one record of the
// write-ahead log, and no journal is written any more.
//
//   <dir>/journal-<hex>.json   {"format":1,"writes":[{"path":"objects/<plural>/<ns>/<name>","content":"…"|null}]}
//
// Concurrent batches held the locks of all their objects until their journal was gone, so
// two journals left by a crash never name the same object and replay order does not matter.
import * as path from 'node:path';
import { KINDS } from '../api/meta';
import { ApiError } from '../api/errors';
import { errnoCode, readTextFile, removeFileDurable, writeFileAtomic, type DirectoryMaker, type DirectorySyncer } from './disk';
import { OBJECTS_DIR } from './load';
import { isValidName } from './validate';

export const JOURNAL_PREFIX = 'journal-';
const JOURNAL_SUFFIX = '.json';
const JOURNAL_FORMAT = 1;

/** One file of a batch: its new content, or null to remove it. `path` is relative to the store directory. */
export interface JournalEntry {
  path: string;
  content: string | null;
}

export function isJournalFile(fileName: string): boolean {
  return fileName.startsWith(JOURNAL_PREFIX) && fileName.endsWith(JOURNAL_SUFFIX);
}

function removeJournal(dir: string, name: string, syncer: DirectorySyncer): Promise<void> {
  return removeFileDurable(dir, name, syncer);
}

/**
 * Replays every journal found in `dir` (names from its listing), then removes it. Returns
 * how many were replayed. A journal that cannot be understood stops the open: guessing
 * would risk serving half a batch.
 */
export async function replayJournals(dir: string, entries: readonly string[], syncer: DirectorySyncer, directories: DirectoryMaker): Promise<number> {
  const journals = entries.filter(isJournalFile).sort();
  for (const name of journals) {
    const file = path.join(dir, name);
    const writes = parseJournal(file, await readTextFile(file));
    await Promise.all(writes.map((w) => redo(dir, w, syncer, directories)));
    await removeJournal(dir, name, syncer);
  }
  return journals.length;
}

/** Puts one write's content (or removal) in place, durably; doing it twice is harmless. */
export async function redo(dir: string, entry: JournalEntry, syncer: DirectorySyncer, directories: DirectoryMaker): Promise<void> {
  const target = path.join(dir, entry.path);
  const parent = path.dirname(target);
  const fileName = path.basename(target);
  if (entry.content !== null) {
    await directories.ensure(parent);
    await writeFileAtomic(parent, fileName, entry.content, syncer);
    return;
  }
  try {
    await removeFileDurable(parent, fileName, syncer);
  } catch (err) {
    // Removed before the crash already: that is the state the journal asks for.
    if (errnoCode((err as Error).cause) !== 'ENOENT') throw err;
  }
}

function corruptJournal(file: string, why: string): ApiError {
  return new ApiError('InternalError', `store: journal ${file}: ${why}; the store cannot tell which batch writes reached the disk`);
}

function parseJournal(file: string, text: string): JournalEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw corruptJournal(file, `not valid JSON: ${(err as Error).message}`);
  }
  const { format, writes } = (parsed ?? {}) as { format?: unknown; writes?: unknown };
  if (format !== JOURNAL_FORMAT) throw corruptJournal(file, `unsupported journal format ${JSON.stringify(format)}`);
  if (!Array.isArray(writes)) throw corruptJournal(file, 'has no list of writes');
  return writes.map((w, i) => checkEntry(file, w, i));
}

/** Only object files of known kinds, exactly where the store keeps them: a journal never points elsewhere. */
export function checkEntry(file: string, raw: unknown, index: number): JournalEntry {
  const entry = (raw ?? {}) as { path?: unknown; content?: unknown };
  if (typeof entry.path !== 'string' || (entry.content !== null && typeof entry.content !== 'string')) {
    throw corruptJournal(file, `write ${index} is not {path, content}`);
  }
  const parts = entry.path.split('/');
  const [objects, plural, namespace, name] = parts;
  const known = objects === OBJECTS_DIR && KINDS.some((k) => k.plural === plural) && isValidName(namespace) && isValidName(name);
  if (parts.length !== 4 || !known) throw corruptJournal(file, `write ${index} names ${JSON.stringify(entry.path)}, which is not an object file`);
  return { path: entry.path, content: entry.content };
}

/** The journal path of an object file: relative to the store directory, with "/" separators. */
export function journalPath(plural: string, namespace: string, name: string): string {
  return [OBJECTS_DIR, plural, namespace, name].join('/');
}
