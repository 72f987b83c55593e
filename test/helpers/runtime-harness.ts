// The harness the runtime integration tests share: one busybox rootfs per file (the overlay
// lower layer), and per test a fresh state dir and cgroup parent with a Runtime on them.
// After each test every container is force-deleted and the cgroup parent removed; the
// errors of that cleanup are collected and thrown, so a leak fails the test that caused it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';

import { Runtime, type ContainerConfig, type ExitStatus } from '../../src/runtime/index';
import { buildBusyboxRootfs } from './busybox-rootfs';
import { throwCollected } from './errors';

export interface RuntimeHarness {
  /** The Runtime of the current test (a new one per test). */
  readonly runtime: Runtime;
  /** The current test's temp dir; the Runtime's state is in `state/` below it. */
  readonly tmp: string;
  /** The busybox rootfs, shared by the file's tests: never write to it. */
  readonly lower: string;
  /** The current test's cgroup parent (unique per test, so a leak cannot hide in a reused one). */
  readonly cgroupParent: string;
  /** A container of the busybox image running `command`, PATH=/bin, with `extra` on top. */
  container(id: string, command: string[], extra?: Partial<ContainerConfig>): ContainerConfig;
  /** Runs a container to completion and returns its exit status and json-file output (see readJsonLog for `log`). */
  runToEnd(config: ContainerConfig, log?: ReadJsonLogOptions): Promise<ExitStatus & ContainerOutput>;
}

export interface ReadJsonLogOptions {
  /** Read a log file that does not exist (yet) as empty instead of failing with ENOENT. */
  missingIsEmpty?: boolean;
}

export interface ContainerOutput {
  stdout: string;
  stderr: string;
}

/**
 * Registers the beforeAll/afterAll/beforeEach/afterEach hooks of a runtime test file and
 * returns the harness they fill. `name` tells this file's temp dirs and cgroups apart
 * (`d2p-<name>-…`) when a leftover has to be traced back.
 */
export function runtimeHarness(name: string): RuntimeHarness {
  let imageDir: string | undefined;
  let lower: string | undefined;
  let tmp: string | undefined;
  let runtime: Runtime | undefined;
  let cgroupParent: string | undefined;
  /** Failures of the runtime's background work (a deleted container's files), thrown after the test. */
  let backgroundErrors: unknown[] = [];

  beforeAll(() => {
    imageDir = fs.mkdtempSync(path.join(os.tmpdir(), `d2p-${name}-image-`));
    lower = buildBusyboxRootfs(path.join(imageDir, 'layer'));
  });

  afterAll(() => {
    if (imageDir) fs.rmSync(imageDir, { recursive: true, force: true });
  });

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), `d2p-${name}-`));
    cgroupParent = `d2p-${name}-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    backgroundErrors = [];
    runtime = new Runtime({ stateDir: path.join(tmp, 'state'), cgroupParent, onBackgroundError: (e) => backgroundErrors.push(e) });
  });

  afterEach(async () => {
    const errors = runtime ? await removeEverything(runtime) : [];
    errors.push(...backgroundErrors);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    runtime = tmp = cgroupParent = undefined;
    throwCollected(`cleaning up after a ${name} test`, errors);
  });

  const harness: RuntimeHarness = {
    get runtime() {
      return defined(runtime, 'runtime');
    },
    get tmp() {
      return defined(tmp, 'tmp');
    },
    get lower() {
      return defined(lower, 'lower');
    },
    get cgroupParent() {
      return defined(cgroupParent, 'cgroupParent');
    },
    container: (id, command, extra = {}) => ({ id, rootfs: { lowerDirs: [harness.lower] }, image: { env: ['PATH=/bin'] }, command, ...extra }),
    runToEnd: async (config, log = {}) => {
      await harness.runtime.run(config);
      const exit = await harness.runtime.wait(config.id);
      return { ...exit, ...readJsonLog(harness.runtime.logPath(config.id), log) };
    },
  };
  return harness;
}

/** Force-deletes every container of `runtime`, then its cgroup parent; returns what failed. */
async function removeEverything(runtime: Runtime): Promise<unknown[]> {
  const errors: unknown[] = [];
  try {
    for (const c of await runtime.list()) {
      try {
        await runtime.delete(c.id, { force: true });
      } catch (e) {
        errors.push(e);
      }
    }
  } catch (e) {
    errors.push(e);
  }
  try {
    runtime.cgroups.removeParent();
  } catch (e) {
    errors.push(e);
  }
  await runtime.settled();
  return errors;
}

function defined<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`runtime harness: ${what} is only set while a test runs (use it inside it/beforeEach, not at module level)`);
  return value;
}

/**
 * A json-file log (one {log, stream, time} record a line, as Docker's json-file driver)
 * split back into stdout and stderr. A missing file is an error unless `missingIsEmpty`:
 * a poll that may run before the shim wrote its first line says so explicitly.
 */
export function readJsonLog(file: string, opts: ReadJsonLogOptions = {}): ContainerOutput {
  const out: ContainerOutput = { stdout: '', stderr: '' };
  if (opts.missingIsEmpty && !fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    const rec = JSON.parse(line) as { log: string; stream: 'stdout' | 'stderr'; time: string };
    out[rec.stream] += rec.log;
  }
  return out;
}

export function sh(script: string): string[] {
  return ['sh', '-c', script];
}
