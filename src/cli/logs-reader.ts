// Reading and following the json-file logs the shim writes (addon/src/shim/supervisor.cc):
// one JSON object per line, {"log":"text\n","stream":"stdout","time":"<RFC 3339, ns>Z"},
// the format of Docker's json-file driver, so `d2p logs` answers like `docker logs`.
// The shim opens the log with O_APPEND and never rotates it; a recreated container gets a
// new file at the same path (Runtime.delete removes the bundle directory). A follower
// therefore notices three things: more bytes, a new file (another inode) and a shorter
// file (truncation), and reads the new content from its start in the last two cases.
import * as fs from 'node:fs';
import { parseDuration } from '../api/duration';
import { containerId } from '../../controllers/container-id';
import { containerDir } from '../runtime/bundle';
import { CliError } from './io';

export type LogStream = 'stdout' | 'stderr';

export interface LogRecord {
  /** The text as written, with its newline (absent for a line cut at 16 KiB, as Docker). */
  log: string;
  stream: LogStream;
  /** As stored: RFC 3339 with nanoseconds. */
  time: string;
  /** Nanoseconds since the epoch, for ordering and --since. */
  timeNs: bigint;
}

/** A malformed line names the file and line, so a corrupt log is findable. */
export class LogFormatError extends CliError {
  constructor(file: string, line: number, why: string) {
    super(`${file}:${line}: not a json-file log record: ${why}`, { code: 'D2P_LOG_FORMAT' });
    this.name = 'LogFormatError';
  }
}

/** The runtime's id of a Container object: `<namespace>_<name>`, the Container controller's own rule. */
export function runtimeId(namespace: string, name: string): string {
  return containerId(namespace, name);
}

/** Where the runtime keeps the container's log (Runtime.logPath, without loading the addon). */
export function containerLogPath(containersDir: string, namespace: string, name: string): string {
  return containerDir(containersDir, runtimeId(namespace, name)).log;
}

// ------------------------------------------------------------------------------ time

const RFC3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** Nanoseconds since the epoch of an RFC 3339 timestamp, keeping all nine fraction digits. */
export function parseTimestampNs(time: string): bigint | undefined {
  const m = RFC3339.exec(time);
  if (!m) return undefined;
  const seconds = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(seconds)) return undefined;
  const fraction = BigInt((m[2] ?? '').padEnd(9, '0'));
  return BigInt(seconds) * 1_000_000n + fraction;
}

/**
 * docker logs --since: an RFC 3339 timestamp, a Unix time ("1700000000.5"), or a Go
 * duration counted back from now ("10m", "1h30m") — the forms of docker's
 * api/types/time.GetTimestamp.
 */
export function parseSince(text: string, nowMs: number): bigint {
  const absolute = parseTimestampNs(text);
  if (absolute !== undefined) return absolute;
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) return BigInt(Date.parse(`${text}T00:00:00Z`)) * 1_000_000n;
  const unix = /^(\d+)(?:\.(\d{1,9}))?$/.exec(text);
  if (unix) return BigInt(unix[1]) * 1_000_000_000n + BigInt((unix[2] ?? '').padEnd(9, '0'));
  try {
    return BigInt(Math.round((nowMs - parseDuration(text)) * 1e6));
  } catch (err) {
    throw new CliError(`--since ${JSON.stringify(text)}: expected a timestamp (2024-01-02T15:04:05Z), a Unix time or a duration (10m, 1h30m): ${(err as Error).message}`, {
      code: 'D2P_USAGE',
      cause: err,
    });
  }
}

/** --tail: a count, or "all" as docker accepts. */
export function parseTail(text: string | undefined): number | undefined {
  if (text === undefined || text === 'all') return undefined;
  if (!/^\d+$/.test(text)) throw new CliError(`--tail ${JSON.stringify(text)}: expected a number of lines or "all"`, { code: 'D2P_USAGE' });
  return Number(text);
}

// ------------------------------------------------------------------------------ parsing

/** One line of the file (without its newline) as a record. */
export function parseLogLine(line: string, file: string, lineNumber: number): LogRecord {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new LogFormatError(file, lineNumber, (err as Error).message);
  }
  const rec = value as Partial<Record<'log' | 'stream' | 'time', unknown>>;
  if (typeof value !== 'object' || value === null || typeof rec.log !== 'string' || typeof rec.time !== 'string') {
    throw new LogFormatError(file, lineNumber, 'expected "log" and "time" strings');
  }
  const timeNs = parseTimestampNs(rec.time);
  if (timeNs === undefined) throw new LogFormatError(file, lineNumber, `invalid time ${JSON.stringify(rec.time)}`);
  const stream: LogStream = rec.stream === 'stderr' ? 'stderr' : 'stdout';
  return { log: rec.log, stream, time: rec.time, timeNs };
}

/** Complete lines of a chunk, and what is left after the last newline (a record being written). */
export function splitComplete(text: string): { lines: string[]; rest: string } {
  const end = text.lastIndexOf('\n');
  if (end < 0) return { lines: [], rest: text };
  return { lines: text.slice(0, end).split('\n').filter((l) => l !== ''), rest: text.slice(end + 1) };
}

export interface LogFilter {
  /** Only records at or after this time (ns since the epoch). */
  sinceNs?: bigint;
  /** Only the last N records (after --since, as docker applies them). */
  tail?: number;
}

export function filterRecords(records: readonly LogRecord[], filter: LogFilter): LogRecord[] {
  const since = filter.sinceNs;
  const kept = since === undefined ? [...records] : records.filter((r) => r.timeNs >= since);
  if (filter.tail === undefined) return kept;
  return filter.tail === 0 ? [] : kept.slice(-filter.tail);
}

export interface LogSnapshot {
  records: LogRecord[];
  /** Where a LogFollower continues so that nothing is printed twice. */
  offset: number;
  identity?: FileIdentity;
}

/** Every complete record of a log file; a missing file (container never started) has none. */
export function readLogFile(file: string, filter: LogFilter = {}): LogSnapshot {
  const identity = LogFollower.identityOf(file);
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], offset: 0 };
    throw new CliError(`cannot read the log ${file}: ${(err as Error).message}`, { code: 'D2P_LOG_UNREADABLE', cause: err });
  }
  const end = data.lastIndexOf(0x0a) + 1;
  const { lines } = splitComplete(data.subarray(0, end).toString('utf8'));
  const records = lines.map((line, i) => parseLogLine(line, file, i + 1));
  return { records: filterRecords(records, filter), offset: end, identity };
}

// ------------------------------------------------------------------------------ output

/** A record and whose it is ("web-1"). */
export interface LabelledRecord {
  label: string;
  record: LogRecord;
}

/** All sources' records in time order; records of one source keep their order on equal times. */
export function mergeByTime(sources: readonly { label: string; records: readonly LogRecord[] }[]): LabelledRecord[] {
  const all = sources.flatMap((s) => s.records.map((record) => ({ label: s.label, record })));
  // Array.prototype.sort is stable (ES2019), which keeps each file's own order.
  return all.sort((a, b) => (a.record.timeNs < b.record.timeNs ? -1 : a.record.timeNs > b.record.timeNs ? 1 : 0));
}

// The colours docker compose cycles through for prefixes (cmd/formatter/colors.go).
const PREFIX_COLOURS = [36, 33, 32, 35, 34, 96, 93, 92, 95, 94];

export interface PrefixOptions {
  /** Width the labels are padded to: the longest label of the project. */
  width: number;
  colour: boolean;
  /** Which colour; the caller keeps it stable per label. */
  colourIndex?: number;
}

/** "web-1  | " as docker compose prints it, padded so the bars line up, coloured on a TTY. */
export function formatPrefix(label: string, opts: PrefixOptions): string {
  const text = `${label.padEnd(opts.width)}  | `;
  if (!opts.colour) return text;
  const code = PREFIX_COLOURS[(opts.colourIndex ?? 0) % PREFIX_COLOURS.length];
  return `\u001b[${code}m${text}\u001b[0m`;
}

/** One output line: prefix, optional timestamp (-t), the text, always ending in a newline. */
export function formatLogLine(record: LogRecord, prefix: string, timestamps: boolean): string {
  const text = record.log.endsWith('\n') ? record.log : `${record.log}\n`;
  return `${prefix}${timestamps ? `${record.time} ` : ''}${text}`;
}

/** Assigns each label a colour in order of first appearance, as compose does per service. */
export class ColourPicker {
  private readonly assigned = new Map<string, number>();
  indexOf(label: string): number {
    let index = this.assigned.get(label);
    if (index === undefined) {
      index = this.assigned.size;
      this.assigned.set(label, index);
    }
    return index;
  }
}

// ------------------------------------------------------------------------------ following

/**
 * Which file this is. An inode number can be reused at once for the next file created
 * (the recreated container's log), so the birth time (statx(2) stx_btime) is part of it.
 */
export interface FileIdentity {
  dev: number;
  ino: number;
  birthtimeMs: number;
}

function identityOfStats(st: fs.Stats): FileIdentity {
  return { dev: st.dev, ino: st.ino, birthtimeMs: st.birthtimeMs };
}

function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.birthtimeMs === b.birthtimeMs;
}

/**
 * Follows one log file by polling its size and identity. Polling rather than inotify: the
 * file may not exist yet, may be deleted and recreated in another directory inode, and
 * inotify watches on a deleted file's directory go stale (inotify(7), IN_IGNORED).
 */
export class LogFollower {
  private identity: FileIdentity | undefined;
  private offset: number;
  private rest = '';
  private lineNumber = 0;
  /** The file's first bytes as read: a log truncated in place and rewritten differs here. */
  private head: Buffer | undefined;

  constructor(
    readonly file: string,
    /** Where to start: the offset readLogFile returned, so nothing is printed twice. */
    start: { offset: number; identity?: FileIdentity } = { offset: 0 },
  ) {
    this.offset = start.offset;
    this.identity = start.identity;
    if (this.offset > 0) this.head = firstRecord(readRange(file, 0, Math.min(HEAD_MAX_BYTES, this.offset)));
  }

  /** The file's identity now, for a follower that continues after readLogFile. */
  static identityOf(file: string): FileIdentity | undefined {
    const st = statOrUndefined(file);
    return st ? identityOfStats(st) : undefined;
  }

  /** New complete records since the last call (none when the file does not exist). */
  poll(): LogRecord[] {
    const st = statOrUndefined(this.file);
    if (!st) {
      // Gone (the container is being recreated): whatever appears next is a new file.
      this.restart();
      this.identity = undefined;
      return [];
    }
    const identity = identityOfStats(st);
    const records: LogRecord[] = [];
    if (this.identity !== undefined && !sameFile(this.identity, identity)) {
      // Rotated by rename (log → log.1, as Docker's json-file does): what was written to the
      // old file since the last poll is still there, and comes before the new file's records.
      records.push(...this.drainRotated(this.identity));
      this.restart();
    } else if (st.size < this.offset || (st.size > this.offset && this.rewritten())) {
      // The first-record check reads the file, so it runs only when there is something new
      // to read: a rewritten file not yet past our offset is caught once it grows past it.
      this.restart();
    }
    this.identity = identity;
    if (st.size > this.offset) records.push(...this.consume(readRange(this.file, this.offset, st.size)));
    return records;
  }

  private consume(chunk: Buffer): LogRecord[] {
    if (this.offset === 0) this.head = firstRecord(chunk);
    this.offset += chunk.length;
    const { lines, rest } = splitComplete(this.rest + chunk.toString('utf8'));
    this.rest = rest;
    return lines.map((line) => parseLogLine(line, this.file, ++this.lineNumber));
  }

  /** The rest of the file we were reading, found renamed to `<file>.1` (same inode). */
  private drainRotated(previous: FileIdentity): LogRecord[] {
    const rotated = `${this.file}.1`;
    const st = statOrUndefined(rotated);
    if (!st || !sameFile(previous, identityOfStats(st)) || st.size <= this.offset) return [];
    const { lines } = splitComplete(this.rest + readRange(rotated, this.offset, st.size).toString('utf8'));
    return lines.map((line) => parseLogLine(line, rotated, ++this.lineNumber));
  }

  /** Truncated in place (max-file 1) and grown back past our offset before we looked. */
  private rewritten(): boolean {
    if (!this.head || this.offset === 0) return false;
    return !readRange(this.file, 0, this.head.length).equals(this.head);
  }

  private restart(): void {
    this.offset = 0;
    this.rest = '';
    this.lineNumber = 0;
    this.head = undefined;
  }
}

/**
 * A file's first record, which ends with its nanosecond timestamp, so a rewritten file
 * does not start with the same bytes even when it logs the same text.
 */
function firstRecord(start: Buffer): Buffer {
  const newline = start.indexOf(0x0a);
  return start.subarray(0, newline >= 0 ? newline + 1 : Math.min(start.length, HEAD_MAX_BYTES));
}

const HEAD_MAX_BYTES = 16 * 1024;

function statOrUndefined(file: string): fs.Stats | undefined {
  try {
    return fs.statSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // The container directory vanishes while a container is recreated: wait for the new file.
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new CliError(`cannot read the log ${file}: ${(err as Error).message}`, { code: 'D2P_LOG_UNREADABLE', cause: err });
  }
}

function readRange(file: string, from: number, to: number): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    throw new CliError(`cannot open the log ${file}: ${(err as Error).message}`, { code: 'D2P_LOG_UNREADABLE', cause: err });
  }
  try {
    const buf = Buffer.alloc(to - from);
    const n = fs.readSync(fd, buf, 0, buf.length, from);
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}
