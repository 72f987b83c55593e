// Per-layer progress of pulls and pushes, drawn the way the docker CLI draws it
// (github.com/moby/moby pkg/jsonmessage: DisplayJSONMessagesStream and JSONProgress.String):
//  - on a terminal, one line per layer, redrawn in place by moving the cursor up to it,
//    clearing it and moving back down ("\x1b[<n>A", "\x1b[2K", "\x1b[<n>B");
//  - otherwise one plain line per change of status, and no progress bars at all, which is
//    what `docker pull | cat` prints, so logs and CI output stay readable.
import type { ProgressEvent, PushProgress } from '../images/index';
import type { Writer } from './io';
import { humanSize } from './printers';

export interface ByteProgress {
  current: number;
  total: number;
}

export interface ProgressDisplayOptions {
  /** Redraw lines in place (a terminal) or print one line per status change. */
  tty: boolean;
  /** Terminal width; the bar shrinks to fit narrow terminals. Default 120. */
  columns?: number;
}

/** Docker's bar is 50 cells wide; narrower terminals get a narrower one rather than wrapped lines. */
const MAX_BAR_WIDTH = 50;
const MIN_BAR_WIDTH = 10;
/** "a1b2c3d4e5f6: Downloading " before the bar and " 123.4MB/456.7MB" after it. */
const TEXT_AROUND_BAR = 45;

export function barWidthFor(columns: number | undefined): number {
  if (columns === undefined) return MAX_BAR_WIDTH;
  return Math.max(MIN_BAR_WIDTH, Math.min(MAX_BAR_WIDTH, columns - TEXT_AROUND_BAR));
}

/**
 * "[=====>     ]  12.3MB/40.1MB", as JSONProgress.String() writes it: the bar's "="s stand
 * for the fraction done, the sizes are right-aligned in 8 cells, and a current beyond the
 * total (a wonky report) shows the current alone.
 */
export function formatByteProgress(p: ByteProgress, barWidth: number): string {
  const fraction = p.total > 0 ? Math.min(1, Math.max(0, p.current / p.total)) : 0;
  const filled = Math.floor(fraction * barWidth);
  const bar = `[${'='.repeat(filled)}>${' '.repeat(barWidth - filled)}]`;
  const current = humanSize(p.current);
  const numbers = p.current > p.total ? current.padStart(8) : `${current.padStart(8)}/${humanSize(p.total)}`;
  return `${bar} ${numbers}`;
}

/** Layer IDs are shown as Docker shows them: the first 12 hex digits of the digest. */
export function shortId(digest: string): string {
  const colon = digest.indexOf(':');
  return digest.slice(colon + 1, colon + 13);
}

const ESC = '\x1b[';

/** Lines keyed by an ID (a layer), each holding its latest status. */
export class ProgressDisplay {
  private readonly order: string[] = [];
  /** What was last drawn (terminal) or printed (plain) for each ID. */
  private readonly shown = new Map<string, string>();
  private readonly barWidth: number;

  constructor(
    private readonly out: Writer,
    private readonly opts: ProgressDisplayOptions,
  ) {
    this.barWidth = barWidthFor(opts.columns);
  }

  /** A line of its own (a header, "Digest: …"), printed below the layer lines. */
  message(text: string): void {
    this.out.write(`${text}\n`);
    // Lines printed after the layers push them up; later redraws count from the bottom, so
    // layers above a message are no longer redrawn (docker behaves the same way).
    if (this.opts.tty) this.order.length = 0;
  }

  update(id: string, status: string, progress?: ByteProgress): void {
    if (this.opts.tty) this.draw(id, progress ? `${status} ${formatByteProgress(progress, this.barWidth)}` : status);
    else if (!progress) this.print(id, status);
  }

  private print(id: string, status: string): void {
    if (this.shown.get(id) === status) return;
    this.shown.set(id, status);
    this.out.write(`${id}: ${status}\n`);
  }

  private draw(id: string, text: string): void {
    if (this.shown.get(id) === text && this.order.includes(id)) return;
    this.shown.set(id, text);
    const index = this.order.indexOf(id);
    if (index < 0) {
      this.order.push(id);
      this.out.write(`${ESC}2K\r${id}: ${text}\n`);
      return;
    }
    const up = this.order.length - index;
    this.out.write(`${ESC}${up}A${ESC}2K\r${id}: ${text}${ESC}${up}B\r`);
  }
}

/** The words `docker pull` uses for each state of a layer. */
export function pullStatus(e: ProgressEvent): { status: string; progress?: ByteProgress } {
  switch (e.state) {
    case 'waiting':
      return { status: 'Pulling fs layer' };
    case 'downloading':
      return { status: 'Downloading', progress: { current: e.current, total: e.total } };
    case 'extracting':
      // Extraction runs while the bytes stream in, so once the download is complete only
      // its tail is left: docker's "Download complete" is the honest word for this moment.
      return { status: 'Download complete' };
    case 'done':
      return { status: 'Pull complete' };
    case 'cached':
      return { status: 'Already exists' };
  }
}

/** Feeds an ImageStore pull's progress events into a display. */
export function pullProgress(display: ProgressDisplay): (e: ProgressEvent) => void {
  return (e) => {
    const { status, progress } = pullStatus(e);
    display.update(shortId(e.digest), status, progress);
  };
}

/** The words `docker push` uses; the image library reports no byte counts for uploads, so no bar. */
export function pushStatus(e: PushProgress): string {
  switch (e.state) {
    case 'exists':
      return 'Layer already exists';
    case 'uploading':
      return 'Pushing';
    case 'done':
      return 'Pushed';
  }
}

/** Feeds pushImage's progress into a display, for the digests in `layers` only (docker does not show the config blob). */
export function pushProgress(display: ProgressDisplay, layers: readonly string[]): (e: PushProgress) => void {
  const shown = new Set(layers);
  return (e) => {
    if (shown.has(e.digest)) display.update(shortId(e.digest), pushStatus(e));
  };
}
