// Printing containers' log records as docker compose does ("web-1  | …", coloured,
// aligned), and following their json-file logs as they grow, rotate and are recreated:
// for `d2p logs -f`, `up` attached and `run` attached.
import type { Container } from '../api/types';
import { containerLabel, sleep } from './container-state';
import type { Writer } from './io';
import {
  ColourPicker,
  containerLogPath,
  filterRecords,
  formatLogLine,
  formatPrefix,
  LogFollower,
  mergeByTime,
  readLogFile,
  type LogFilter,
  type LogRecord,
} from './logs-reader';

export interface PrinterOptions {
  colour: boolean;
  timestamps: boolean;
  /** false: lines without "web-1  | " (--no-log-prefix, or `run` attached to one container). */
  prefix: boolean;
  /** stderr records go here instead of with stdout (`d2p run`, as docker run attaches both). */
  stderr?: Writer;
}

/** Writes records with compose's prefix; the prefix width follows the longest label seen. */
export class PrefixedPrinter {
  private width = 0;
  private readonly colours = new ColourPicker();

  constructor(
    private readonly out: Writer,
    private readonly opts: PrinterOptions,
  ) {}

  /** Makes room for a label before anything of it is printed, so the bars line up. */
  register(label: string): void {
    this.width = Math.max(this.width, label.length);
    this.colours.indexOf(label);
  }

  write(label: string, record: LogRecord): void {
    this.register(label);
    const prefix = this.opts.prefix ? formatPrefix(label, { width: this.width, colour: this.opts.colour, colourIndex: this.colours.indexOf(label) }) : '';
    const target = record.stream === 'stderr' && this.opts.stderr ? this.opts.stderr : this.out;
    target.write(formatLogLine(record, prefix, this.opts.timestamps));
  }

  /** A line of our own about a container ("web-1 exited with code 0"), as compose prints them. */
  note(label: string, text: string): void {
    this.register(label);
    this.out.write(`${this.opts.prefix ? formatPrefix(label, { width: this.width, colour: this.opts.colour, colourIndex: this.colours.indexOf(label) }) : ''}${text}\n`);
  }
}

// ------------------------------------------------------------------------------ following

const FOLLOW_POLL_MS = 100;
/** How often -f asks the API for containers that appeared (new replicas, recreations). */
const DISCOVER_EVERY_MS = 1_000;

/**
 * Follows the log files of a changing set of containers. Known containers are keyed by
 * namespace/name: a container recreated under the same name keeps its follower, which
 * notices the new file by itself.
 */
export class ProjectFollower {
  private readonly followers = new Map<string, { label: string; follower: LogFollower }>();

  constructor(
    private readonly containersDir: string,
    private readonly printer: PrefixedPrinter,
    private readonly filter: LogFilter = {},
  ) {}

  /** Prints what the containers logged so far (merged by time), then follows from there. */
  addAll(containers: readonly Container[]): void {
    const fresh = containers.filter((c) => !this.followers.has(keyOf(c)));
    for (const c of fresh) this.printer.register(containerLabel(c));
    const snapshots = fresh.map((c) => {
      const file = containerLogPath(this.containersDir, c.metadata.namespace ?? 'default', c.metadata.name);
      const snapshot = readLogFile(file, this.filter);
      this.followers.set(keyOf(c), { label: containerLabel(c), follower: new LogFollower(file, snapshot) });
      return { label: containerLabel(c), records: snapshot.records };
    });
    for (const { label, record } of mergeByTime(snapshots)) this.printer.write(label, record);
  }

  /** One round over every file; lines of different containers come out as they arrived. */
  pollOnce(): void {
    for (const { label, follower } of this.followers.values()) {
      // --since still applies to what follows (docker logs -f --since); --tail does not.
      const records = filterRecords(follower.poll(), { sinceNs: this.filter.sinceNs });
      for (const record of records) this.printer.write(label, record);
    }
  }

  /** Polls until the signal aborts; `discover` is asked now and then for the current containers. */
  async run(discover: () => Promise<Container[]>, signal: AbortSignal, onTick?: (containers: Container[] | undefined) => boolean | Promise<boolean>): Promise<void> {
    let lastDiscovery = Date.now();
    while (!signal.aborted) {
      this.pollOnce();
      let current: Container[] | undefined;
      if (Date.now() - lastDiscovery >= DISCOVER_EVERY_MS) {
        current = await discover();
        lastDiscovery = Date.now();
        this.addNew(current);
      }
      if (onTick && (await onTick(current))) break;
      await sleep(FOLLOW_POLL_MS, signal);
    }
    this.pollOnce();
  }

  /** A container that appeared while following: all its lines are new, --tail does not apply. */
  addNew(containers: readonly Container[]): void {
    for (const c of containers) {
      if (this.followers.has(keyOf(c))) continue;
      const file = containerLogPath(this.containersDir, c.metadata.namespace ?? 'default', c.metadata.name);
      this.printer.register(containerLabel(c));
      this.followers.set(keyOf(c), { label: containerLabel(c), follower: new LogFollower(file) });
    }
  }
}

const keyOf = (c: Container): string => `${c.metadata.namespace ?? 'default'}/${c.metadata.name}`;
