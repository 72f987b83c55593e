// Binding the API's unix socket so that it is never reachable with looser permissions than
// 0600, and clearing a socket file left behind by a daemon that died.
import type { Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import type { Server } from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';

/** sockaddr_un.sun_path is 108 bytes including the terminating NUL (unix(7)). */
const MAX_SOCKET_PATH_BYTES = 107;

export class SocketInUseError extends Error {
  readonly code = 'D2P_SOCKET_IN_USE';
  constructor(readonly socketPath: string) {
    super(`another server is already answering on ${socketPath}; is a d2p daemon already running for this root?`);
    this.name = 'SocketInUseError';
  }
}

export function checkSocketPathLength(socketPath: string): void {
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw Object.assign(
      new Error(`socket path ${socketPath} is ${bytes} bytes long; unix sockets allow at most ${MAX_SOCKET_PATH_BYTES} (unix(7)); use a shorter --root or --socket`),
      { code: 'ENAMETOOLONG' },
    );
  }
}

/**
 * A socket file nobody accepts on is stale (its server died without unlinking it) and is
 * removed; one that answers belongs to a live server and is left alone. Anything that is
 * not a socket is never removed.
 */
export async function clearStaleSocket(socketPath: string): Promise<void> {
  const stat = await lstatIfPresent(socketPath);
  if (!stat) return;
  if (!stat.isSocket()) {
    throw Object.assign(new Error(`${socketPath} exists and is not a unix socket; refusing to replace it`), { code: 'EEXIST' });
  }
  if (await somethingAnswers(socketPath)) throw new SocketInUseError(socketPath);
  await unlinkIfPresent(socketPath);
}

/** true if a connect() succeeds; false on ECONNREFUSED/ENOENT (no listener). */
export function somethingAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.connect({ path: socketPath });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (e: NodeJS.ErrnoException) => {
      probe.destroy();
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') resolve(false);
      else reject(withContext(e, `probing ${socketPath}`));
    });
  });
}

/**
 * listen(2) on a socket inside a fresh 0700 directory, chmod it to 0600, then rename(2) it
 * into place: the final path never exists with the umask's permissions, and the process
 * umask (shared by every thread of the process) is never touched. Returns the inode so
 * that closing removes only our own socket file.
 */
export async function listenPrivately(server: Server, socketPath: string): Promise<{ ino: number }> {
  checkSocketPathLength(socketPath);
  const staging = await fs.mkdtemp(path.join(path.dirname(socketPath), '.d2p'));
  const stagedSocket = path.join(staging, 's');
  try {
    checkSocketPathLength(stagedSocket);
    await listen(server, stagedSocket);
    await fs.chmod(stagedSocket, 0o600);
    await fs.rename(stagedSocket, socketPath);
    return { ino: (await fs.lstat(socketPath)).ino };
  } catch (e) {
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    throw withContext(e, `listening on ${socketPath}`);
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}

function listen(server: Server, socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    server.once('error', onError);
    server.listen(socketPath, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Removes the socket file only if it is still the one we bound (same inode). */
export async function removeOwnSocket(socketPath: string, ino: number): Promise<void> {
  const stat = await lstatIfPresent(socketPath);
  if (stat?.ino === ino) await unlinkIfPresent(socketPath);
}

async function lstatIfPresent(socketPath: string): Promise<Stats | undefined> {
  try {
    return await fs.lstat(socketPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw withContext(e, `inspecting ${socketPath}`);
  }
}

async function unlinkIfPresent(file: string): Promise<void> {
  try {
    await fs.unlink(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw withContext(e, `removing ${file}`);
  }
}

function withContext(e: unknown, doing: string): Error {
  const err = e as NodeJS.ErrnoException;
  return Object.assign(new Error(`${doing}: ${err.message}`, { cause: e }), { code: err.code, errno: err.errno, syscall: err.syscall, path: err.path });
}
