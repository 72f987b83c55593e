// The GitOps loop for one directory: chokidar sees file changes, a periodic resync and a
// watch on the applied objects see drift, and every trigger goes through one Coalescer so
// that syncs never overlap and a burst becomes one sync. Used by `d2p daemon --manifests`
// (inside the daemon, through its own client) and by `d2p watch` (in the foreground).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseDuration } from '../api/duration';
import type { ApiObject } from '../api/meta';
import { mergeIntoLive, sameDesiredState } from '../client/apply';
import type { Client } from '../client/types';
import { errorLines } from '../cli/format-error';
import { EventRecorder } from '../../controllers/events';
import { createJsonLogger } from '../../controllers/logger';
import { SET_KINDS, type AppliedObject } from './apply-set';
import { Coalescer } from './coalescer';
import { objectKeyOf } from './read-dir';
import { checkSourceName, DEFAULT_INTERVAL, GitOpsError, SOURCE_LABEL, SOURCE_NAMESPACE, sourceNameFor, sourceObject } from './source';
import { syncSource, type SyncReport } from './sync';

export interface GitOpsOptions {
  client: Client;
  /** The manifest directory; made absolute. */
  dir: string;
  /** Source name; default: the directory's base name, cleaned up. */
  name?: string;
  /** default: d2p-system */
  namespace?: string;
  /** default: true */
  prune?: boolean;
  /** Full resync period as a duration ("30s"); default 30s. */
  interval?: string;
  /** Debounce of file events; default 300 ms quiet, at most 2 s after the first event. */
  quietMs?: number;
  maxWaitMs?: number;
  /** Watch the applied objects and sync as soon as one drifts (default true). */
  watchObjects?: boolean;
  /** Called after every sync, successful or not. */
  onSync?: (report: SyncReport) => void;
  log?: (line: string) => void;
}

export interface GitOps {
  readonly namespace: string;
  readonly name: string;
  readonly dir: string;
  /** Syncs now (after a sync in progress) and returns what it did. */
  sync(): Promise<SyncReport>;
  /** Number of syncs run so far. */
  readonly syncCount: number;
  /** Stops watching; resolves when a sync in progress has finished. Idempotent. */
  stop(): Promise<void>;
}

const DEFAULT_QUIET_MS = 300;
const DEFAULT_MAX_WAIT_MS = 2000;
const WATCH_RETRY_MS = 1000;

export async function startGitOps(opts: GitOpsOptions): Promise<GitOps> {
  const dir = path.resolve(opts.dir);
  assertDirectory(dir);
  const name = opts.name ?? sourceNameFor(dir);
  checkSourceName(name);
  const namespace = opts.namespace ?? SOURCE_NAMESPACE;
  const interval = opts.interval ?? DEFAULT_INTERVAL;
  const intervalMs = parseInterval(interval);
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const loop = new GitOpsLoop(opts, { dir, name, namespace, interval, log });
  await loop.start(intervalMs);
  return {
    namespace,
    name,
    dir,
    sync: () => loop.syncNow(),
    get syncCount() {
      return loop.syncCount;
    },
    stop: () => loop.stop(),
  };
}

function assertDirectory(dir: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    throw new GitOpsError(`cannot watch ${dir}: ${(err as Error).message}`, { code: 'D2P_GITOPS_NO_DIRECTORY', cause: err });
  }
  if (!st.isDirectory()) throw new GitOpsError(`cannot watch ${dir}: not a directory`, { code: 'D2P_GITOPS_NO_DIRECTORY' });
}

function parseInterval(interval: string): number {
  let ms: number;
  try {
    ms = parseDuration(interval);
  } catch (err) {
    throw new GitOpsError(`invalid interval ${JSON.stringify(interval)}: ${(err as Error).message}`, { code: 'D2P_GITOPS_INVALID_INTERVAL', cause: err });
  }
  if (ms < 1000) throw new GitOpsError(`invalid interval ${JSON.stringify(interval)}: must be at least 1s`, { code: 'D2P_GITOPS_INVALID_INTERVAL' });
  return ms;
}

/** Hidden entries (".git", editors' ".x.swp") are never manifests: expandPaths skips them too. */
function isHiddenUnder(dir: string, p: string): boolean {
  const rel = path.relative(dir, p);
  return rel !== '' && rel.split(path.sep).some((part) => part.startsWith('.'));
}

interface Resolved {
  dir: string;
  name: string;
  namespace: string;
  interval: string;
  log: (line: string) => void;
}

class GitOpsLoop {
  syncCount = 0;
  private readonly coalescer: Coalescer;
  private readonly recorder: EventRecorder;
  private fsWatcher: import('chokidar').FSWatcher | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private readonly objectWatches: { stop(): void }[] = [];
  private stopped = false;
  private syncing = false;
  /** The set as the last sync left it: what drift is measured against. */
  private expected = new Map<string, AppliedObject>();
  private lastReport: SyncReport | undefined;
  /** Object events that arrived during a sync, judged once it has finished. */
  private deferred = new Map<string, { type: string; object: ApiObject }>();

  constructor(
    private readonly opts: GitOpsOptions,
    private readonly r: Resolved,
  ) {
    this.coalescer = new Coalescer(() => this.runSync(), {
      quietMs: opts.quietMs ?? DEFAULT_QUIET_MS,
      maxWaitMs: opts.maxWaitMs ?? DEFAULT_MAX_WAIT_MS,
    });
    const logger = createJsonLogger({ write: r.log, fields: { component: 'gitops', source: `${r.namespace}/${r.name}` } });
    this.recorder = new EventRecorder(opts.client.events, { component: 'gitops', logger });
  }

  async start(intervalMs: number): Promise<void> {
    await this.watchFiles();
    this.resyncTimer = setInterval(() => this.coalescer.trigger(), intervalMs);
    // The timer alone must not keep a process alive that has nothing else to do.
    this.resyncTimer.unref();
    if (this.opts.watchObjects !== false) for (const kind of SET_KINDS) void this.watchKind(kind);
    this.coalescer.trigger();
  }

  async syncNow(): Promise<SyncReport> {
    await this.coalescer.runNow();
    if (!this.lastReport) throw new GitOpsError(`the GitOps watcher of ${this.r.dir} is stopped`, { code: 'D2P_GITOPS_STOPPED' });
    return this.lastReport;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const w of this.objectWatches.splice(0)) w.stop();
    await this.fsWatcher?.close();
    await this.coalescer.stop();
  }

  // ---------------------------------------------------------------------------- files

  private async watchFiles(): Promise<void> {
    const { watch } = require('chokidar') as typeof import('chokidar');
    const watcher = watch(this.r.dir, {
      ignoreInitial: true,
      ignored: (p: string) => isHiddenUnder(this.r.dir, p),
      // Symlinked directories are not followed, as expandPaths does not read them.
      followSymlinks: false,
    });
    this.fsWatcher = watcher;
    watcher.on('all', () => this.coalescer.trigger());
    watcher.on('error', (err: unknown) => this.r.log(`watching ${this.r.dir}: ${errorLines(err).join(' ')}`));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  }

  // ---------------------------------------------------------------------------- syncing

  /** Never rejects: a failed sync is reported (log, Source status, Event) and the next trigger retries. */
  private async runSync(): Promise<void> {
    this.syncing = true;
    try {
      const previous = new Map([...this.expected].map(([key, a]) => [key, a.digest]));
      const source = sourceObject(this.r.namespace, this.r.name, { path: this.r.dir, prune: this.opts.prune ?? true, interval: this.r.interval });
      const report = await syncSource({ client: this.opts.client, recorder: this.recorder, source, previous, log: this.r.log });
      if (report.error === undefined) this.expected = report.objects;
      this.finish(report);
    } catch (err) {
      // The Source itself could not be read or written (daemon gone): say so and wait for the next trigger.
      this.finish({ applied: [], unchanged: 0, pruned: [], driftCorrected: [], fileErrors: [], objects: new Map(), files: [], error: errorLines(err).join(' ') });
    } finally {
      this.syncing = false;
    }
    this.judgeDeferred();
  }

  private finish(report: SyncReport): void {
    this.syncCount++;
    this.lastReport = report;
    if (report.error !== undefined) this.r.log(`sync of ${this.r.dir} failed: ${report.error}`);
    this.opts.onSync?.(report);
  }

  // ---------------------------------------------------------------------------- drift

  /**
   * Watches the set's objects of one kind (label selector), restarting after the stream
   * ends or breaks; the periodic resync covers whatever is missed meanwhile.
   */
  private async watchKind(kind: string): Promise<void> {
    while (!this.stopped) {
      let watch: { stop(): void } & AsyncIterable<{ type: string; object: ApiObject }> | undefined;
      try {
        watch = this.opts.client.for(kind).watch({ labelSelector: `${SOURCE_LABEL}=${this.r.name}` });
        this.objectWatches.push(watch);
        for await (const event of watch) {
          if (this.stopped) break;
          // In-band errors (410 Gone: our starting point is too old) end this stream; a new one starts fresh.
          if (event.type === 'ERROR') {
            this.r.log(`watching ${kind} objects of source ${this.r.name}: ${JSON.stringify(event.object)}; restarting`);
            break;
          }
          if (event.type === 'MODIFIED' || event.type === 'DELETED') this.onObjectEvent(event.type, { ...event.object, kind });
        }
      } catch (err) {
        if (!this.stopped) this.r.log(`watching ${kind} objects of source ${this.r.name}: ${errorLines(err).join(' ')}; retrying`);
      } finally {
        if (watch) {
          watch.stop();
          const i = this.objectWatches.indexOf(watch);
          if (i >= 0) this.objectWatches.splice(i, 1);
        }
      }
      if (!this.stopped) await new Promise((resolve) => setTimeout(resolve, WATCH_RETRY_MS).unref());
    }
  }

  private onObjectEvent(type: string, object: ApiObject): void {
    if (this.syncing) {
      // Our own writes are arriving: judge them against what this sync leaves, not the last.
      this.deferred.set(objectKeyOf(object), { type, object });
      return;
    }
    if (this.drifted(type, object)) this.coalescer.trigger();
  }

  private judgeDeferred(): void {
    const events = [...this.deferred.values()];
    this.deferred.clear();
    if (events.some((e) => this.drifted(e.type, e.object))) this.coalescer.trigger();
  }

  /**
   * An object of the set differs from what the last sync left: its content or the labels
   * the directory sets changed, or it was deleted. Status writes by controllers and events
   * older than our own last write are not drift.
   */
  private drifted(type: string, object: ApiObject): boolean {
    const applied = this.expected.get(objectKeyOf(object));
    if (!applied) return false;
    if (Number(object.metadata.resourceVersion ?? 0) <= Number(applied.live.metadata.resourceVersion ?? 0)) return false;
    if (type === 'DELETED') return true;
    return !sameDesiredState(mergeIntoLive(object, applied.live), object);
  }
}
