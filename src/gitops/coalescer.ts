// Turns a burst of triggers into one run: the run starts once triggers have been quiet for
// `quietMs`, or `maxWaitMs` after the first of them if they never stop (lodash's debounce
// with maxWait). Runs never overlap; triggers during a run bring exactly one more run after
// it. An editor's atomic save (write temp, rename) or a `git checkout` of hundreds of files
// thus becomes one sync of the directory as it is once the burst is over.

export interface CoalescerOptions {
  quietMs: number;
  maxWaitMs: number;
}

export class Coalescer {
  private timer: NodeJS.Timeout | undefined;
  /** When the oldest trigger not yet served arrived; undefined when none waits. */
  private pendingSince: number | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly run: () => Promise<void>,
    private readonly opts: CoalescerOptions,
  ) {}

  /** Something changed: a run will follow. */
  trigger(): void {
    if (this.stopped) return;
    this.pendingSince ??= Date.now();
    // A run in progress re-arms when it ends; arming now could overlap it.
    if (!this.running) this.arm();
  }

  /** Runs now (after the run in progress, if any) and resolves when that run is over. */
  async runNow(): Promise<void> {
    if (this.stopped) return;
    while (this.running) await this.running;
    this.clearTimer();
    this.pendingSince = undefined;
    await this.start();
  }

  /** No more runs; resolves once the one in progress is over. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimer();
    while (this.running) await this.running;
  }

  private arm(): void {
    this.clearTimer();
    const since = this.pendingSince ?? Date.now();
    const delay = Math.max(0, Math.min(this.opts.quietMs, since + this.opts.maxWaitMs - Date.now()));
    this.timer = setTimeout(() => void this.fire(), delay);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async fire(): Promise<void> {
    this.timer = undefined;
    this.pendingSince = undefined;
    await this.start();
  }

  /** The run function reports its own failures; a rejection here would be a bug, so it propagates. */
  private start(): Promise<void> {
    const running = this.run().finally(() => {
      this.running = undefined;
      if (this.pendingSince !== undefined && !this.stopped) this.arm();
    });
    this.running = running;
    return running;
  }
}
