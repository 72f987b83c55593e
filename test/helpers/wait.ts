// Polling for a condition the tests cannot be told about (a process appearing in /proc, a
// log line, a daemon pid file, a synced status): the probe returns undefined until it holds.
export interface PollOptions {
  /** How long to keep probing before failing with "timed out waiting for …". Default 10 s. */
  timeoutMs?: number;
  /** The pause between probes. Default 20 ms. */
  intervalMs?: number;
}

export type Until = <T>(what: string, probe: () => T | undefined | Promise<T | undefined>, opts?: PollOptions) => Promise<T>;

/** An `until` with other defaults, for a file whose probes are slow or expensive. */
export function poller(defaults: PollOptions): Until {
  return (what, probe, opts = {}) => poll(what, probe, { ...defaults, ...opts });
}

export const until: Until = (what, probe, opts = {}) => poll(what, probe, opts);

async function poll<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, opts: PollOptions): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
  }
}
