// Healthchecks of running containers, as Docker runs them (moby daemon/health.go and the
// HEALTHCHECK reference, docs.docker.com/reference/dockerfile/#healthcheck):
//  - test ["CMD", args…] is exec'd, ["CMD-SHELL", cmd] runs `/bin/sh -c cmd`, ["NONE"] or
//    `disable` turns the check off; a spec without a test inherits the image's check, and
//    each timing the spec leaves out comes from the image, then from Docker's defaults
//    (interval 30s, timeout 30s, retries 3, start period 0s, start interval 5s);
//  - the first probe runs one interval after start (startInterval during the start period);
//  - exit 0 is healthy, anything else (or the timeout) a failure; `retries` consecutive
//    failures make the container unhealthy; failures during the start period do not count,
//    but a success there makes it healthy at once.
// One timer chain per container, never two probes of one container at once.
import type { ContainerSpec, HealthState } from '../src/api/types';
import type { Healthcheck as ImageHealthcheck } from '../src/images/index';
import { parseDuration } from '../src/api/duration';
import type { ExecResult } from '../src/runtime/index';
import { TerminalError } from './errors';

export const HEALTH_DEFAULTS = { intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0, startIntervalMs: 5_000 };

export interface ResolvedHealthcheck {
  args: string[];
  intervalMs: number;
  timeoutMs: number;
  retries: number;
  startPeriodMs: number;
  startIntervalMs: number;
}

const NS_PER_MS = 1_000_000;

/** The check Docker would run for this spec and image; undefined when there is none. */
export function resolveHealthcheck(spec: ContainerSpec, image: ImageHealthcheck | undefined): ResolvedHealthcheck | undefined {
  const own = spec.healthcheck;
  if (own?.disable) return undefined;
  const test = own?.test?.length ? own.test : image?.test;
  if (!test?.length || test[0] === 'NONE') return undefined;
  const ms = (field: 'interval' | 'timeout' | 'startPeriod' | 'startInterval', fallback: number): number => {
    const value = own?.[field];
    if (value !== undefined) {
      try {
        return parseDuration(value);
      } catch (error) {
        throw new TerminalError('InvalidHealthcheck', `spec.healthcheck.${field}: ${(error as Error).message}`, { cause: error });
      }
    }
    const fromImage = image?.[field];
    return fromImage ? fromImage / NS_PER_MS : fallback;
  };
  return {
    args: healthcheckArgs(test),
    intervalMs: ms('interval', HEALTH_DEFAULTS.intervalMs),
    timeoutMs: ms('timeout', HEALTH_DEFAULTS.timeoutMs),
    retries: own?.retries ?? (image?.retries || HEALTH_DEFAULTS.retries),
    startPeriodMs: ms('startPeriod', HEALTH_DEFAULTS.startPeriodMs),
    startIntervalMs: ms('startInterval', HEALTH_DEFAULTS.startIntervalMs),
  };
}

function healthcheckArgs(test: string[]): string[] {
  const [kind, ...rest] = test;
  if (kind === 'CMD' && rest.length > 0) return rest;
  if (kind === 'CMD-SHELL' && rest.length > 0) return ['/bin/sh', '-c', rest.join(' ')];
  throw new TerminalError('InvalidHealthcheck', `spec.healthcheck.test ${JSON.stringify(test)} must be ["CMD", args…], ["CMD-SHELL", command] or ["NONE"]`);
}

export interface HealthChange {
  key: string;
  health: HealthState;
  /** Output of the probe that caused the change (Docker keeps it in State.Health.Log). */
  output: string;
  exitCode: number | undefined;
}

export interface HealthProberOptions {
  exec: (containerId: string, args: string[]) => Promise<ExecResult>;
  onChange: (change: HealthChange) => void;
  onProbeError?: (key: string, error: unknown) => void;
  now?: () => number;
}

interface Probe {
  containerId: string;
  /** Identifies the process being probed; a new start means a new probe chain. */
  incarnation: string;
  check: ResolvedHealthcheck;
  startedAt: number;
  health: HealthState;
  failingStreak: number;
  timer: NodeJS.Timeout | undefined;
  stopped: boolean;
}

export class HealthProber {
  private readonly probes = new Map<string, Probe>();

  constructor(private readonly opts: HealthProberOptions) {}

  /**
   * Ensures `key` is probed for this incarnation; keeps an existing chain running.
   * `initial` is the state to continue from (status.health after a daemon restart).
   */
  ensure(key: string, containerId: string, incarnation: string, check: ResolvedHealthcheck, startedAt: number, initial: HealthState = 'starting'): void {
    const existing = this.probes.get(key);
    if (existing && existing.incarnation === incarnation) return;
    this.stop(key);
    const probe: Probe = { containerId, incarnation, check, startedAt, health: initial, failingStreak: 0, timer: undefined, stopped: false };
    this.probes.set(key, probe);
    this.schedule(key, probe);
  }

  health(key: string): HealthState | undefined {
    return this.probes.get(key)?.health;
  }

  has(key: string): boolean {
    return this.probes.has(key);
  }

  stop(key: string): void {
    const probe = this.probes.get(key);
    if (!probe) return;
    probe.stopped = true;
    clearTimeout(probe.timer);
    this.probes.delete(key);
  }

  stopAll(): void {
    for (const key of [...this.probes.keys()]) this.stop(key);
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private inStartPeriod(probe: Probe): boolean {
    return this.now() - probe.startedAt < probe.check.startPeriodMs;
  }

  private schedule(key: string, probe: Probe): void {
    const delay = this.inStartPeriod(probe) && probe.health === 'starting' ? probe.check.startIntervalMs : probe.check.intervalMs;
    probe.timer = setTimeout(() => void this.runProbe(key, probe), delay);
    probe.timer.unref();
  }

  private async runProbe(key: string, probe: Probe): Promise<void> {
    const outcome = await this.execWithTimeout(key, probe);
    if (probe.stopped) return;
    this.record(key, probe, outcome);
    if (!probe.stopped) this.schedule(key, probe);
  }

  private async execWithTimeout(key: string, probe: Probe): Promise<{ ok: boolean; output: string; exitCode?: number }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), probe.check.timeoutMs);
    });
    try {
      const result = await Promise.race([this.opts.exec(probe.containerId, probe.check.args), timeout]);
      if (result === 'timeout') return { ok: false, output: `Health check exceeded timeout (${probe.check.timeoutMs}ms)` };
      const output = Buffer.concat([result.stdout, result.stderr]).toString('utf8').slice(0, 4096);
      return { ok: result.exitCode === 0, output, exitCode: result.exitCode };
    } catch (error) {
      // The container may be gone between scheduling and running; the reconciler stops us then.
      this.opts.onProbeError?.(key, error);
      return { ok: false, output: error instanceof Error ? error.message : String(error) };
    } finally {
      clearTimeout(timer);
    }
  }

  private record(key: string, probe: Probe, outcome: { ok: boolean; output: string; exitCode?: number }): void {
    let next: HealthState = probe.health;
    if (outcome.ok) {
      probe.failingStreak = 0;
      next = 'healthy';
    } else if (!(this.inStartPeriod(probe) && probe.health === 'starting')) {
      probe.failingStreak++;
      if (probe.failingStreak >= probe.check.retries) next = 'unhealthy';
    }
    if (next === probe.health) return;
    probe.health = next;
    this.opts.onChange({ key, health: next, output: outcome.output, exitCode: outcome.exitCode });
  }
}
