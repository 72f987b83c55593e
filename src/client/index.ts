// The TypeScript client of the d2p API: HTTP over the daemon's unix socket, keep-alive
// connections shared by every kind.
import { API_VERSION, kindByName, KINDS } from '../api/meta';
import { applyAll } from './apply-all';
import { HttpResourceClient } from './resource-client';
import { LoopbackTransport, type RequestHandler } from './loopback-transport';
import { Transport, type ApiTransport } from './transport';
import type { ApiResourceList, Client, ResourceClient } from './types';

export type {
  ApiResourceList,
  ApplyAllItem,
  ApplyAllResult,
  Client,
  ClientWatchOptions,
  DeleteOptions,
  PatchType,
  ResourceClient,
  WriteOptions,
} from './types';
export { DaemonUnreachableError, UnexpectedResponseError } from './transport';

export interface ClientOptions {
  socketPath: string;
  /**
   * Inside the daemon: the API server's own handler, called in process instead of through
   * the socket (see loopback-transport.ts). Everyone else talks over socketPath.
   */
  handler?: RequestHandler;
  /** Starts the daemon when the first request finds none (the socket client only). */
  startDaemon?: () => Promise<void>;
}

export function createClient(opts: ClientOptions): Client {
  const transport: ApiTransport = opts.handler ? new LoopbackTransport(opts.handler) : new Transport(opts.socketPath, opts.startDaemon);
  const watches = new Set<{ stop(): void }>();
  const byKind = new Map<string, ResourceClient>();
  for (const info of KINDS) byKind.set(info.kind, new HttpResourceClient(transport, info, watches));

  // One implementation behind both overloads of Client.for: the kind decides the path,
  // the type parameter only what the caller sees.
  const resourceClient = ((kind: string): ResourceClient => {
    const info = kindByName(kind);
    if (!info) {
      throw new Error(`unknown kind ${JSON.stringify(kind)}; the API serves ${KINDS.map((k) => k.kind).join(', ')}`);
    }
    return byKind.get(info.kind)!;
  }) as Client['for'];

  let closing: Promise<void> | undefined;
  const closeOnce = async (): Promise<void> => {
    for (const watch of [...watches]) watch.stop();
    await transport.close();
  };

  return {
    socketPath: opts.socketPath,
    for: resourceClient,
    images: resourceClient('Image'),
    builds: resourceClient('Build'),
    volumes: resourceClient('Volume'),
    networks: resourceClient('Network'),
    containers: resourceClient('Container'),
    services: resourceClient('Service'),
    events: resourceClient('Event'),
    applyAll: (objects, applyOpts) => applyAll(transport, objects, applyOpts),
    discovery: () => transport.call<ApiResourceList>('GET', `/apis/${API_VERSION}`),
    healthz: async () => {
      const { statusCode, text } = await transport.text('/healthz');
      if (statusCode !== 200) {
        throw Object.assign(new Error(`the d2p daemon on ${opts.socketPath} is not healthy: HTTP ${statusCode}: ${text.slice(0, 200)}`), {
          code: 'D2P_DAEMON_UNHEALTHY',
        });
      }
    },
    close: () => (closing ??= closeOnce()),
  };
}
