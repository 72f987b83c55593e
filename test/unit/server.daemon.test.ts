// The daemon in-process: lock, store, API server and controllers started and stopped together.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Paths } from '../../src/config';
import { createClient } from '../../src/client/index';
import type { Client } from '../../src/client/types';
import { runDaemon, type Daemon, type DaemonOptions } from '../../src/server/daemon';
import { DaemonRunningError } from '../../src/server/pid-lock';

let dir: string;
const running: Daemon[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-daemon-'));
});
afterEach(async () => {
  try {
    for (const daemon of running.splice(0).reverse()) await daemon.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

async function start(root: string, startControllers?: DaemonOptions['startControllers']): Promise<Daemon> {
  const daemon = await runDaemon({ root, handleSignals: false, log: () => undefined, startControllers });
  running.push(daemon);
  return daemon;
}

describe('runDaemon', () => {
  it('serves the root, hands controllers a working client, and cleans up on stop', async () => {
    const root = path.join(dir, 'root');
    const calls: string[] = [];
    let given: { client: Client; paths: Paths } | undefined;
    const daemon = await start(root, async (ctx) => {
      given = ctx;
      calls.push('start');
      // Controllers talk to the API like any client.
      await ctx.client.volumes.create({ apiVersion: 'd2p.dev/v1alpha1', kind: 'Volume', metadata: { name: 'from-controller', namespace: 'default' } });
      return {
        stop: async () => {
          calls.push('stop');
          // The API is still up while controllers stop, so they can write final status.
          await ctx.client.healthz();
        },
      };
    });
    const { paths } = daemon;
    expect(given?.paths).toEqual(paths);
    expect(paths.socket).toBe(path.join(root, 'd2p.sock'));
    expect(fs.statSync(paths.socket).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(paths.daemonPid, 'utf8').split('\n')[0]).toBe(String(process.pid));

    const client = createClient({ socketPath: paths.socket });
    try {
      const names = (await client.volumes.list()).items.map((o) => o.metadata.name);
      expect(names).toEqual(['from-controller']);
    } finally {
      await client.close();
    }

    await daemon.stop();
    running.splice(running.indexOf(daemon), 1);
    expect(calls).toEqual(['start', 'stop']);
    expect(fs.existsSync(paths.socket)).toBe(false);
    expect(fs.existsSync(paths.daemonPid)).toBe(false);
    // Stopping twice is harmless.
    await daemon.stop();
  });

  it('refuses a second daemon on the same root and leaves the first serving', async () => {
    const root = path.join(dir, 'root');
    const first = await start(root);
    const second = runDaemon({ root, socket: path.join(dir, 'other.sock'), handleSignals: false, log: () => undefined });
    await expect(second).rejects.toBeInstanceOf(DaemonRunningError);
    await expect(second).rejects.toMatchObject({ code: 'D2P_DAEMON_RUNNING', pid: process.pid });
    expect(fs.existsSync(path.join(dir, 'other.sock'))).toBe(false);
    const client = createClient({ socketPath: first.paths.socket });
    try {
      await client.healthz();
    } finally {
      await client.close();
    }
  });

  it('takes over the lock of a daemon that died', async () => {
    const root = path.join(dir, 'root');
    fs.mkdirSync(root, { recursive: true });
    // A pid that existed and is gone: a child that has already exited.
    const deadPid = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    fs.writeFileSync(path.join(root, 'daemon.pid'), `${deadPid}\n\n`);
    const daemon = await start(root);
    expect(fs.readFileSync(daemon.paths.daemonPid, 'utf8').split('\n')[0]).toBe(String(process.pid));
  });

  it('treats a live pid with another start time as a stale lock (pid reuse)', async () => {
    const root = path.join(dir, 'root');
    fs.mkdirSync(root, { recursive: true });
    fs.writeFileSync(path.join(root, 'daemon.pid'), `${process.pid}\n1\n`);
    const daemon = await start(root);
    expect(fs.readFileSync(daemon.paths.daemonPid, 'utf8')).not.toBe(`${process.pid}\n1\n`);
  });

  it('undoes a start whose controllers fail', async () => {
    const root = path.join(dir, 'root');
    const failing = runDaemon({
      root,
      handleSignals: false,
      log: () => undefined,
      startControllers: async () => {
        throw new Error('controller boot failed');
      },
    });
    await expect(failing).rejects.toThrow('controller boot failed');
    expect(fs.existsSync(path.join(root, 'd2p.sock'))).toBe(false);
    expect(fs.existsSync(path.join(root, 'daemon.pid'))).toBe(false);
    // Everything was released: a new daemon can start on the root.
    await start(root);
  });
});
