// Restart policies and the restart back-off of the Container controller, as Docker's
// restartmanager (moby/moby restartmanager/restartmanager.go) decides them:
//  - the delay starts at 100 ms and doubles on every restart, up to 1 minute;
//  - a container that ran for 10 s or more before dying starts again from 100 ms;
//  - `on-failure` restarts only on a non-zero exit code, at most maxRetries times (0 or
//    absent: no limit); `always` and `unless-stopped` restart whatever the exit code;
//    a container stopped by the user is never restarted (desired-state annotation).
// Docker keeps the delay in memory only, and so do we: a daemon restart starts it afresh.
import type { RestartPolicy } from '../src/api/types';

export const RESTART_BASE_DELAY_MS = 100;
export const RESTART_MAX_DELAY_MS = 60_000;
/** A run at least this long resets the back-off (Docker: executionDuration >= 10s). */
export const RESTART_RESET_AFTER_MS = 10_000;

export interface ExitFacts {
  exitCode: number;
  /** Restarts made so far (status.restartCount). */
  restartCount: number;
}

/** Whether Docker would restart a container that exited like this under `policy`. */
export function shouldRestart(policy: RestartPolicy | undefined, maxRetries: number | undefined, exit: ExitFacts): boolean {
  switch (policy ?? 'no') {
    case 'always':
    case 'unless-stopped':
      return true;
    case 'on-failure':
      if (exit.exitCode === 0) return false;
      return !maxRetries || exit.restartCount < maxRetries;
    case 'no':
      return false;
  }
}

/** The back-off of one container: which death it was computed for, and when to start again. */
export interface PlannedRestart {
  /** Identifies the death (the runtime's finishedAt, or the pid that died). */
  deathId: string;
  delayMs: number;
  notBefore: number;
}

/**
 * Remembers, per container key, the last delay used. `plan` is idempotent for one death:
 * reconciling the same dead container twice does not double the delay twice.
 */
export class RestartBackoff {
  private readonly lastDelay = new Map<string, number>();
  private readonly planned = new Map<string, PlannedRestart>();

  plan(key: string, deathId: string, ranForMs: number | undefined, diedAt: number): PlannedRestart {
    const existing = this.planned.get(key);
    if (existing && existing.deathId === deathId) return existing;
    const previous = ranForMs !== undefined && ranForMs >= RESTART_RESET_AFTER_MS ? undefined : this.lastDelay.get(key);
    const delayMs = previous === undefined ? RESTART_BASE_DELAY_MS : Math.min(previous * 2, RESTART_MAX_DELAY_MS);
    this.lastDelay.set(key, delayMs);
    const planned = { deathId, delayMs, notBefore: diedAt + delayMs };
    this.planned.set(key, planned);
    return planned;
  }

  /** Forgets everything about `key` (container deleted or recreated from a new spec). */
  reset(key: string): void {
    this.lastDelay.delete(key);
    this.planned.delete(key);
  }
}
