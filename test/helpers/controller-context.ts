// What controller tests hand the code under test when they run it against the FakeApi:
// a ReconcileContext for calling a reconcile function directly, and a Manager with the
// short backoffs that let a test see retries and watch restarts within its timeout.
import * as fs from 'node:fs';

import type { Paths } from '../../src/config';
import { EventRecorder } from '../../controllers/events';
import type { Logger } from '../../controllers/logger';
import { Manager, type Controller, type ReconcileContext } from '../../controllers/manager';
import { combinedError, runAllSteps } from './errors';
import type { FakeApi } from './fake-client';

export interface FakeContextOptions {
  /** The component Events are recorded under (Event.source.component), e.g. 'volume-controller'. */
  component: string;
  paths: Paths;
  logger: Logger;
  /** Defaults to a signal that is never aborted. */
  signal?: AbortSignal;
  /** Where ctx.enqueue goes; by default a call fails the test (the code under test was not expected to queue). */
  enqueue?: (key: string) => void;
}

export function fakeReconcileContext(api: FakeApi, opts: FakeContextOptions): ReconcileContext {
  return {
    client: (kind) => api.for(kind),
    events: new EventRecorder(api.for('Event'), { component: opts.component, logger: opts.logger }),
    paths: opts.paths,
    log: opts.logger,
    signal: opts.signal ?? new AbortController().signal,
    enqueue:
      opts.enqueue ??
      ((key) => {
        throw new Error(`unexpected ctx.enqueue(${JSON.stringify(key)}): pass FakeContextOptions.enqueue`);
      }),
  };
}

export interface FakeManagerOptions {
  paths: Paths;
  logger: Logger;
  controllers: Controller[];
  /** The ceiling of the reconcile retry backoff (it starts at 5 ms). */
  maxBackoffMs: number;
}

/** A started Manager on the FakeApi with `controllers` registered; the caller stops it. */
export async function startFakeManager(api: FakeApi, opts: FakeManagerOptions): Promise<Manager> {
  const manager = new Manager({
    client: api,
    paths: opts.paths,
    logger: opts.logger,
    backoff: { baseDelayMs: 5, maxDelayMs: opts.maxBackoffMs },
    // minHealthyWatchMs 0: a watch the FakeApi ends on purpose is not counted as a failure
    // (controllers/informer.ts), so restarts do not back off beyond the 20 ms ceiling.
    watchRetry: { baseDelayMs: 5, maxDelayMs: 20, minHealthyWatchMs: 0 },
  });
  for (const controller of opts.controllers) manager.register(controller);
  try {
    await manager.start();
  } catch (e) {
    // The caller never gets this manager to stop: stop what did start before failing.
    const errors = await runAllSteps([() => manager.stop()]);
    throw combinedError('starting the fake manager', e, errors);
  }
  return manager;
}

/** afterEach of a controller test: stops the manager it may have started, then removes its temp dir even if stop() failed. */
export async function stopManagerAndRemoveDir(manager: Manager | undefined, dir: string): Promise<void> {
  try {
    await manager?.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
