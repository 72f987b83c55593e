// `d2p port CONTAINER [PRIVATE_PORT[/PROTO]]`: where a container's ports are published, as
// `docker port` prints it ("80/tcp -> 0.0.0.0:32768"), from the ports the Container
// controller recorded after publishing them (so a random host port shows its real number).
import { DEFAULT_NAMESPACE } from '../../api/meta';
import type { Container } from '../../api/types';
import type { CommandContext } from '../context';
import { CliError } from '../io';

export interface PortOptions {
  container: string;
  privatePort?: string;
  namespace?: string;
}

export async function portCommand(opts: PortOptions, ctx: CommandContext): Promise<number> {
  const namespace = opts.namespace ?? DEFAULT_NAMESPACE;
  const client = await ctx.client();
  const c = (await client.for('Container').get(namespace, opts.container)) as Container;
  const wanted = opts.privatePort === undefined ? undefined : parsePrivatePort(opts.privatePort);
  const ports = (c.status?.ports ?? []).filter((p) => !wanted || (p.containerPort === wanted.port && p.protocol === wanted.protocol));
  if (ports.length === 0) {
    if (wanted) throw new CliError(`no public port '${wanted.port}/${wanted.protocol}' published for ${namespace}/${opts.container}`);
    return 0;
  }
  for (const p of ports) {
    ctx.io.stdout.write(wanted ? `${p.hostIP}:${p.hostPort}\n` : `${p.containerPort}/${p.protocol} -> ${p.hostIP}:${p.hostPort}\n`);
  }
  return 0;
}

function parsePrivatePort(text: string): { port: number; protocol: 'tcp' | 'udp' } {
  const m = /^(\d{1,5})(?:\/(tcp|udp))?$/.exec(text);
  const port = m ? Number(m[1]) : NaN;
  if (!m || port < 1 || port > 65535) throw new CliError(`invalid port "${text}": expected PORT or PORT/tcp|udp, e.g. 80/tcp`);
  return { port, protocol: (m[2] as 'tcp' | 'udp' | undefined) ?? 'tcp' };
}
