// The client side of a container's attach.sock (addon/src/shim/attach.h): `d2p run -it`
// and `-i` reach the terminal or stdin of a container's first process through it, the
// way `docker attach` reaches containerd-shim's console. Frames to the shim are
// [type u8][length u16 BE][payload]; what comes back is the terminal's raw output.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

import { containerDir } from './bundle';
import { RuntimeError } from './errors';

/** Where the shim of container `id` listens (addon/src/shim/attach.cc attach_listen). */
export function attachSocketPath(stateDir: string, id: string): string {
  return path.join(containerDir(stateDir, id).dir, 'attach.sock');
}

const FRAME_MAX = 4096;
/** sockaddr_un.sun_path is 108 bytes with its NUL (unix(7)). */
const SUN_PATH_MAX = 107;

export class AttachError extends RuntimeError {
  override readonly code = 'D2P_RUNTIME_ATTACH';
  readonly path: string;
  constructor(socketPath: string, why: string, cause?: unknown) {
    super(`attaching to ${socketPath}: ${why}${cause instanceof Error ? `: ${cause.message}` : ''}`, undefined, { cause });
    this.path = socketPath;
  }
}

export interface AttachSession {
  /** The terminal's output (nothing without a terminal: output is in the log). Ends when the container does. */
  output: net.Socket;
  write(data: Buffer | string): void;
  resize(cols: number, rows: number): void;
  /** Closes the container's stdin (docker's stdin_once); no effect with a terminal. */
  endInput(): void;
  close(): void;
}

function frame(type: string, payload: Buffer): Buffer {
  const header = Buffer.from([type.charCodeAt(0), payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([header, payload]);
}

/** Frames of at most FRAME_MAX bytes, the shim's limit. */
export function dataFrames(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += FRAME_MAX) out.push(frame('d', data.subarray(i, i + FRAME_MAX)));
  return out;
}

export function resizeFrame(cols: number, rows: number): Buffer {
  if (![cols, rows].every((v) => Number.isInteger(v) && v >= 1 && v <= 65535))
    throw new RangeError(`resize(${cols}, ${rows}): columns and rows must be integers from 1 to 65535`);
  const payload = Buffer.alloc(4);
  payload.writeUInt16BE(cols, 0);
  payload.writeUInt16BE(rows, 2);
  return frame('r', payload);
}

export const END_FRAME = frame('e', Buffer.alloc(0));

/** Connects, going through /proc/self/fd of the directory when the path is too long to bind. */
export async function attach(socketPath: string): Promise<AttachSession> {
  let dirFd: number | undefined;
  let target = socketPath;
  if (Buffer.byteLength(socketPath) > SUN_PATH_MAX) {
    dirFd = fs.openSync(path.dirname(socketPath), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    target = `/proc/self/fd/${dirFd}/${path.basename(socketPath)}`;
  }
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.createConnection(target);
    s.once('connect', () => resolve(s));
    s.once('error', (err) => reject(new AttachError(socketPath, 'cannot connect', err)));
  }).finally(() => {
    if (dirFd !== undefined) fs.closeSync(dirFd);
  });
  const send = (buf: Buffer): void => {
    if (!socket.destroyed && socket.writable) socket.write(buf);
  };
  return {
    output: socket,
    write: (data) => dataFrames(typeof data === 'string' ? Buffer.from(data) : data).forEach(send),
    resize: (cols, rows) => send(resizeFrame(cols, rows)),
    endInput: () => send(END_FRAME),
    close: () => socket.end(),
  };
}
