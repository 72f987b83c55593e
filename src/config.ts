// Where d2p keeps its state. Every path derives from the state root so that a test, or a
// second d2p on the same machine, can move everything with one `--root`/`D2P_ROOT`.
import * as path from 'node:path';

export const DEFAULT_ROOT = '/var/lib/d2p';
export const DEFAULT_SOCKET = '/run/d2p/d2p.sock';

export interface Paths {
  root: string;
  /** Objects of the embedded store. */
  store: string;
  /** Named volumes: <volumes>/<namespace>/<name>/_data, as Docker's /var/lib/docker/volumes. */
  volumes: string;
  /** Content-addressed blobs and extracted layers. */
  images: string;
  /** Per-container bundles, shim state and logs. */
  containers: string;
  socket: string;
  /** Pid file of the daemon serving this root. */
  daemonPid: string;
  daemonLog: string;
}

export function resolvePaths(opts: { root?: string; socket?: string } = {}): Paths {
  const root = path.resolve(opts.root ?? process.env.D2P_ROOT ?? DEFAULT_ROOT);
  // A moved root gets its own socket beside it; otherwise two daemons would fight over one.
  const socket = opts.socket ?? process.env.D2P_SOCKET ?? (root === DEFAULT_ROOT ? DEFAULT_SOCKET : path.join(root, 'd2p.sock'));
  return {
    root,
    store: path.join(root, 'store'),
    volumes: path.join(root, 'volumes'),
    images: path.join(root, 'images'),
    containers: path.join(root, 'containers'),
    socket,
    daemonPid: path.join(root, 'daemon.pid'),
    daemonLog: path.join(root, 'daemon.log'),
  };
}
