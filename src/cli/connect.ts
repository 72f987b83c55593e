// A client of the daemon serving the state root, starting the daemon when none answers
// (DESIGN.md §2: "d2p apply starts the daemon when none is running"). Its own module so
// that the client and what it loads come in only for commands that talk to the API.
import { createClient, type Client } from '../client';
import type { Paths } from '../config';
import { lazy } from './lazy';

// What starts a daemon is needed only when none answers.
const ensureDaemonModule = lazy(() => require('../client/ensure-daemon'), () => import('../client/ensure-daemon.js'));

export async function connect(paths: Paths, startDaemon: boolean): Promise<Client> {
  // No round trip to check first: the first request that finds no daemon starts it.
  if (startDaemon) return createClient({ socketPath: paths.socket, startDaemon: async () => (await ensureDaemonModule()).ensureDaemon(paths) });
  // Without starting one, the caller wants to know now whether a daemon answers.
  const client = createClient({ socketPath: paths.socket });
  try {
    await client.healthz();
    return client;
  } catch (err) {
    await client.close();
    throw err;
  }
}
