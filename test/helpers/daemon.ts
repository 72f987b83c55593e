// The daemon the end-to-end integration tests run in-process: the store and API server on a
// unix socket in the test's temp dir, every real controller (the real Runtime and d2p-shim
// under a cgroup parent of the test's own), and busybox test images imported up front.
// stop() takes everything down in dependency order and reports every step that failed.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, expect, vi } from 'vitest';

import { createClient } from '../../src/client/index';
import type { Client } from '../../src/client/types';
import { resolvePaths } from '../../src/config';
import { closeNetworkingFor } from '../../src/network/attach';
import { CgroupManager } from '../../src/runtime/index';
import { runDaemon, type Daemon } from '../../src/server/daemon';
import { startControllers } from '../../controllers/index';
import { createJsonLogger } from '../../controllers/logger';
import { combinedError, runAllSteps, throwCollected } from './errors';
import { importTestImage } from './test-image';

export interface TestImage {
  ref: string;
  extraLayers?: Buffer[];
  extraDirs?: string[];
}

export interface TestDaemonOptions {
  /** The test's temp dir: the state root is `root/` and the socket `d2p.sock` below it. The caller removes it after stop(). */
  tmp: string;
  /** The cgroup parent of the containers; stop() removes it. */
  cgroupParent: string;
  /** Busybox images (see importTestImage) imported into the ImageStore before the daemon starts. */
  images?: TestImage[];
  /**
   * Also set D2P_CGROUP_PARENT for this process while the daemon runs: the CLI commands a
   * test calls in-process open the runtime with it (exec, kill, stats). stop() restores it.
   */
  exportCgroupParent?: boolean;
}

export interface TestDaemon {
  client: Client;
  daemon: Daemon;
  /** The state root. */
  root: string;
  socket: string;
  /**
   * Deletes every Service, then every Container (waiting until they are gone, so their
   * processes and mounts are), then every Network (waiting likewise); closes the client,
   * stops the daemon, closes the networking of the root and removes the cgroup parent.
   * Every step runs even if an earlier one failed; the failures are thrown together.
   */
  stop(): Promise<void>;
}

/** Deletions are asynchronous (finalizers run in the controllers); this bounds the wait for them. */
const DELETION_TIMEOUT_MS = 30_000;

// Controller retries back off from 50 ms instead of the production default, so a test
// that provokes an error sees the retry within its own timeout.
const TEST_TUNING = { backoff: { baseDelayMs: 50, maxDelayMs: 1000 } };

export async function startTestDaemon(opts: TestDaemonOptions): Promise<TestDaemon> {
  const root = path.join(opts.tmp, 'root');
  const socket = path.join(opts.tmp, 'd2p.sock');
  const restoreEnv = opts.exportCgroupParent ? exportEnv('D2P_CGROUP_PARENT', opts.cgroupParent) : () => undefined;
  let running: Daemon;
  try {
    for (const image of opts.images ?? []) await importTestImage({ imagesDir: path.join(root, 'images'), workDir: opts.tmp, ...image });
    running = await runDaemon({
      root,
      socket,
      handleSignals: false,
      log: () => undefined,
      startControllers: ({ client, paths }) =>
        startControllers({ client, paths, containerCgroupParent: opts.cgroupParent, logger: createJsonLogger({ write: () => undefined }), tuning: TEST_TUNING }),
    });
  } catch (e) {
    // No daemon is handed out, so nobody else will undo what a half-done start left behind
    // (runDaemon stops what it started itself when it fails).
    const errors = await runAllSteps([() => closeNetworkingFor(resolvePaths({ root })), () => removeCgroupParent(opts.cgroupParent), restoreEnv]);
    throw combinedError(`starting the test daemon in ${opts.tmp}`, e, errors);
  }
  const client = createClient({ socketPath: socket });
  return {
    client,
    daemon: running,
    root,
    socket,
    stop: async () => {
      const errors = await runAllSteps([
        () => deleteAllWorkloads(client),
        () => client.close(),
        () => running.stop(),
        () => closeNetworkingFor(resolvePaths({ root })),
        () => removeCgroupParent(opts.cgroupParent),
        restoreEnv,
      ]);
      throwCollected(`stopping the test daemon in ${opts.tmp}`, errors);
    },
  };
}

// Services first, or their controller would recreate the Containers deleted next; Networks
// last, as a Network is only released once no Container is attached to it.
async function deleteAllWorkloads(client: Client): Promise<void> {
  for (const kind of ['Service', 'Container', 'Network']) {
    const resources = client.for(kind);
    for (const item of (await resources.list({})).items) await resources.delete(item.metadata.namespace!, item.metadata.name);
    await vi.waitFor(async () => expect((await resources.list({})).items).toEqual([]), { timeout: DELETION_TIMEOUT_MS });
  }
}

function removeCgroupParent(parent: string): void {
  new CgroupManager({ parent }).removeParent();
}

/** Sets `name` to `value` and returns what puts the previous value (or its absence) back. */
function exportEnv(name: string, value: string): () => void {
  const previous = process.env[name];
  process.env[name] = value;
  return () => {
    if (previous === undefined) delete process.env[name];
    else process.env[name] = previous;
  };
}

export interface TestDaemonHarness {
  readonly tmp: string;
  readonly client: Client;
  readonly daemon: Daemon;
  readonly root: string;
}

/**
 * Registers the beforeAll/afterAll hooks that run one test daemon for a whole file: a temp
 * dir `d2p-<name>-…`, startTestDaemon in it, and after the file stop() and the temp dir
 * removed (even when stop() fails). Hooks a file registers before this one run before the
 * daemon starts (prerequisite checks), those after it once it runs.
 */
export function useTestDaemon(name: string, opts: Omit<TestDaemonOptions, 'tmp'>, hookTimeoutMs?: number): TestDaemonHarness {
  let tmp: string | undefined;
  let running: TestDaemon | undefined;
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), `d2p-${name}-`));
    running = await startTestDaemon({ ...opts, tmp });
  }, hookTimeoutMs);
  afterAll(async () => {
    try {
      await running?.stop();
    } finally {
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    }
  }, hookTimeoutMs);
  const current = (): TestDaemon => {
    if (!running) throw new Error(`test daemon ${name}: not running (use it inside tests or hooks registered after useTestDaemon)`);
    return running;
  };
  return {
    get tmp() {
      if (!tmp) throw new Error(`test daemon ${name}: no temp dir yet`);
      return tmp;
    },
    get client() {
      return current().client;
    },
    get daemon() {
      return current().daemon;
    },
    get root() {
      return current().root;
    },
  };
}
