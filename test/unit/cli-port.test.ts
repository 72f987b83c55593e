// Published ports as users see them: `d2p port` and the PORTS column read the ports the
// Container controller recorded (the real host port, also a random one), falling back to
// the spec before the container has started.
import { describe, expect, it } from 'vitest';
import type { Container } from '../../src/api/types';
import { portCommand } from '../../src/cli/commands/port';
import type { CommandContext } from '../../src/cli/context';
import { CliError, StringWriter } from '../../src/cli/io';
import { formatPorts } from '../../src/cli/printers';
import type { Client } from '../../src/client/types';
import { resolvePaths } from '../../src/config';
import { createFakeApi } from '../helpers/fake-client';

function container(status?: Container['status']): Container {
  return {
    apiVersion: 'd2p.dev/v1alpha1',
    kind: 'Container',
    metadata: { name: 'shop-web-1', namespace: 'shop' },
    spec: { image: 'busybox', ports: [{ containerPort: 80, protocol: 'tcp' }, { containerPort: 53, hostPort: 5353, hostIP: '127.0.0.1', protocol: 'udp' }] },
    ...(status ? { status } : {}),
  };
}

const published: NonNullable<Container['status']>['ports'] = [
  { containerPort: 80, hostPort: 32768, hostIP: '0.0.0.0', protocol: 'tcp' },
  { containerPort: 53, hostPort: 5353, hostIP: '127.0.0.1', protocol: 'udp' },
];

async function portOutput(c: Container, privatePort?: string): Promise<string> {
  const api = createFakeApi();
  const created = await api.for('Container').create(c);
  await api.for('Container').updateStatus({ ...created, status: c.status });
  const stdout = new StringWriter();
  const ctx = {
    io: { stdout, stderr: new StringWriter() },
    paths: resolvePaths({ root: '/nonexistent' }),
    debug: false,
    now: () => Date.now(),
    client: async () => api as unknown as Client,
    close: async () => undefined,
  } satisfies CommandContext;
  expect(await portCommand({ container: 'shop-web-1', namespace: 'shop', privatePort }, ctx)).toBe(0);
  return stdout.toString();
}

describe('published ports', () => {
  it('PORTS shows the spec before start and the real host ports once published', () => {
    expect(formatPorts(container())).toBe('80/tcp, 127.0.0.1:5353->53/udp');
    expect(formatPorts(container({ phase: 'Running', ports: published }))).toBe('0.0.0.0:32768->80/tcp, 127.0.0.1:5353->53/udp');
  });

  it('d2p port lists every mapping, or the address of one', async () => {
    const c = container({ phase: 'Running', ports: published });
    expect(await portOutput(c)).toBe('80/tcp -> 0.0.0.0:32768\n53/udp -> 127.0.0.1:5353\n');
    expect(await portOutput(c, '53/udp')).toBe('127.0.0.1:5353\n');
    expect(await portOutput(c, '80')).toBe('0.0.0.0:32768\n');
  });

  it('d2p port names what is not published, and refuses a malformed port', async () => {
    const c = container({ phase: 'Running', ports: published });
    await expect(portOutput(c, '8080')).rejects.toThrow(/no public port '8080\/tcp' published for shop\/shop-web-1/);
    await expect(portOutput(c, '80/sctp')).rejects.toThrow(CliError);
  });
});
