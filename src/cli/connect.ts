// A client of the daemon serving the state root, starting the daemon when none answers
// (DESIGN.md §2: "d2p apply starts the daemon when none is running"). Its own module so
// that the client and what it loads come in only for commands that talk to the API.
import { createClient, type Client } from '../client';
import { ensureDaemon } from '../client/ensure-daemon';
import type { Paths } from '../config';

export async function connect(paths: Paths, startDaemon: boolean): Promise<Client> {
  const client = createClient({ socketPath: paths.socket });
  try {
    // One cheap round trip on the connection every later request reuses.
    await client.healthz();
    return client;
  } catch (err) {
    if (!startDaemon || (err as { code?: unknown }).code !== 'D2P_DAEMON_UNREACHABLE') {
      await client.close();
      throw err;
    }
  }
  try {
    await ensureDaemon(paths);
  } catch (err) {
    await client.close();
    throw err;
  }
  return client;
}
