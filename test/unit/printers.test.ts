import { describe, expect, it } from 'vitest';
import type { ApiObject, EventObject } from '../../src/api/meta';
import {
  ageOf,
  formatAge,
  formatNames,
  formatStructured,
  humanSize,
  printTable,
  renderTable,
  sortForDisplay,
  StreamingTable,
} from '../../src/cli/printers';

const NOW = Date.parse('2024-05-01T12:00:00Z');
const ago = (seconds: number): string => new Date(NOW - seconds * 1000).toISOString();

function obj(kind: string, name: string, extra: Omit<Partial<ApiObject>, 'status'> & { status?: Record<string, unknown> } & Record<string, unknown> = {}, createdSecondsAgo = 5): ApiObject {
  const { metadata, ...rest } = extra;
  return {
    apiVersion: 'd2p.dev/v1alpha1',
    kind,
    metadata: { name, namespace: 'shop', creationTimestamp: ago(createdSecondsAgo), ...metadata },
    ...rest,
  } as ApiObject;
}

/** Splits a rendered table into its lines' cells, checking each column starts where its header does. */
function columnStarts(table: string): number[][] {
  return table
    .trimEnd()
    .split('\n')
    .map((line) => [...line.matchAll(/(?:^|(?<=\s{3}))\S/g)].map((m) => m.index ?? -1));
}

describe('formatAge (kubectl HumanDuration)', () => {
  it.each([
    [0, '0s'],
    [5_000, '5s'],
    [119_000, '119s'],
    [120_000, '2m'],
    [182_000, '3m2s'],
    [9 * 60_000 + 59_000, '9m59s'],
    [10 * 60_000 + 30_000, '10m'],
    [179 * 60_000, '179m'],
    [3 * 3600_000, '3h'],
    [4 * 3600_000, '4h'],
    [4 * 3600_000 + 30 * 60_000, '4h30m'],
    [8 * 3600_000 + 5 * 60_000, '8h'],
    [47 * 3600_000, '47h'],
    [48 * 3600_000, '2d'],
    [2 * 86400_000 + 5 * 3600_000, '2d5h'],
    [30 * 86400_000, '30d'],
    [3 * 365 * 86400_000 + 10 * 86400_000, '3y10d'],
    [9 * 365 * 86400_000, '9y'],
    [-500, '0s'],
    [-5000, '<invalid>'],
  ])('%d ms → %s', (ms, text) => {
    expect(formatAge(ms)).toBe(text);
  });

  it('reads <unknown> for a missing or unparsable timestamp', () => {
    expect(ageOf(undefined, NOW)).toBe('<unknown>');
    expect(ageOf('yesterday', NOW)).toBe('<unknown>');
    expect(ageOf(ago(65), NOW)).toBe('65s');
  });
});

describe('humanSize (docker go-units, 3 significant digits, decimal)', () => {
  it.each([
    [0, '0B'],
    [999, '999B'],
    [1000, '1kB'],
    [4_200_000, '4.2MB'],
    [4_194_304, '4.19MB'],
    [115_000_000, '115MB'],
    [1_234_567_890, '1.23GB'],
  ])('%d → %s', (bytes, text) => {
    expect(humanSize(bytes)).toBe(text);
  });
});

describe('renderTable', () => {
  it('pads every column but the last to its widest cell plus 3 spaces', () => {
    const out = renderTable([
      ['NAME', 'STATUS', 'AGE'],
      ['a-long-name', 'Running', '5s'],
      ['b', 'Pending', '10m'],
    ]);
    expect(out).toBe('NAME          STATUS    AGE\na-long-name   Running   5s\nb             Pending   10m\n');
  });

  it('gives narrow columns kubectl tabwriter minimum width of 6', () => {
    expect(renderTable([['A', 'B'], ['1', '2']])).toBe('A     B\n1     2\n');
  });
});

describe('printTable per kind', () => {
  const opts = { now: NOW };

  it('Containers: NAME IMAGE STATUS RESTARTS AGE, wide adds PID IP PORTS HEALTH', () => {
    const ctr = obj('Container', 'shop-web-1', {
      spec: { image: 'busybox:1', ports: [{ containerPort: 80, hostPort: 8080, hostIP: '127.0.0.1', protocol: 'tcp' }, { containerPort: 53, protocol: 'udp' }] },
      status: { phase: 'CrashLoopBackOff', restartCount: 4, pid: 4242, ipAddresses: { shop_default: '10.88.0.2' }, health: 'unhealthy' },
    }, 182);
    const narrow = printTable('Container', [ctr], opts);
    expect(narrow.split('\n')[0].split(/\s{3,}/)).toEqual(['NAME', 'IMAGE', 'STATUS', 'RESTARTS', 'AGE']);
    expect(narrow.split('\n')[1].split(/\s{3,}/)).toEqual(['shop-web-1', 'busybox:1', 'CrashLoopBackOff', '4', '3m2s']);
    const wide = printTable('Container', [ctr], { ...opts, wide: true });
    expect(wide.split('\n')[0].split(/\s{3,}/)).toEqual(['NAME', 'IMAGE', 'STATUS', 'RESTARTS', 'AGE', 'PID', 'IP', 'PORTS', 'HEALTH']);
    expect(wide.split('\n')[1].split(/\s{3,}/)).toEqual([
      'shop-web-1', 'busybox:1', 'CrashLoopBackOff', '4', '3m2s', '4242', '10.88.0.2', '127.0.0.1:8080->80/tcp, 53/udp', 'unhealthy',
    ]);
  });

  it('shows Terminating for an object being deleted, and <none> for empty cells', () => {
    const ctr = obj('Container', 'c', { metadata: { name: 'c', namespace: 'shop', creationTimestamp: ago(1), deletionTimestamp: ago(0) }, spec: { image: 'x' } });
    const row = printTable('Container', [ctr], { ...opts, wide: true }).split('\n')[1].split(/\s{3,}/);
    expect(row[2]).toBe('Terminating');
    expect(row.slice(5)).toEqual(['<none>', '<none>', '<none>', '<none>']);
  });

  it('Services: READY is ready/desired replicas, UP-TO-DATE and IMAGE from the template', () => {
    const svc = obj('Service', 'web', { spec: { replicas: 3, template: { spec: { image: 'nginx:1' } } }, status: { readyReplicas: 2, updatedReplicas: 3 } }, 4 * 3600);
    const lines = printTable('Service', [svc], opts).split('\n');
    expect(lines[0].split(/\s{3,}/)).toEqual(['NAME', 'READY', 'UP-TO-DATE', 'IMAGE', 'AGE']);
    expect(lines[1].split(/\s{3,}/)).toEqual(['web', '2/3', '3', 'nginx:1', '4h']);
  });

  it('Images: REF, DIGEST (12 hex), SIZE (human), STATUS', () => {
    const img = obj('Image', 'busybox', {
      spec: { ref: 'registry:5000/busybox:stable' },
      status: { phase: 'Ready', digest: 'sha256:0123456789abcdef0123', size: 4_200_000 },
    }, 2 * 86400);
    const lines = printTable('Image', [img], opts).split('\n');
    expect(lines[0].split(/\s{3,}/)).toEqual(['NAME', 'REF', 'DIGEST', 'SIZE', 'STATUS', 'AGE']);
    expect(lines[1].split(/\s{3,}/)).toEqual(['busybox', 'registry:5000/busybox:stable', '0123456789ab', '4.2MB', 'Ready', '2d']);
  });

  it('Builds, Networks (wide BRIDGE INTERNAL) and Volumes (wide MOUNTPOINT)', () => {
    const bld = obj('Build', 'api', { spec: { context: '.', tags: ['api:1', 'api:latest'] }, status: { phase: 'Building' } });
    expect(printTable('Build', [bld], opts).split('\n')[1].split(/\s{3,}/)).toEqual(['api', 'Building', 'api:1,api:latest', '5s']);
    const net = obj('Network', 'shop_back', { spec: { driver: 'bridge', internal: true }, status: { subnet: '10.89.1.0/24', gateway: '10.89.1.1', bridge: 'd2p-1a2b' } });
    const netWide = printTable('Network', [net], { ...opts, wide: true }).split('\n');
    expect(netWide[0].split(/\s{3,}/)).toEqual(['NAME', 'DRIVER', 'SUBNET', 'GATEWAY', 'AGE', 'BRIDGE', 'INTERNAL']);
    expect(netWide[1].split(/\s{3,}/)).toEqual(['shop_back', 'bridge', '10.89.1.0/24', '10.89.1.1', '5s', 'd2p-1a2b', 'true']);
    const vol = obj('Volume', 'shop_orders', { spec: {}, status: { phase: 'Ready', mountpoint: '/var/lib/d2p/volumes/shop/orders/_data' } });
    const volWide = printTable('Volume', [vol], { ...opts, wide: true }).split('\n');
    expect(volWide[0].split(/\s{3,}/)).toEqual(['NAME', 'DRIVER', 'STATUS', 'AGE', 'MOUNTPOINT']);
    expect(volWide[1].split(/\s{3,}/)).toEqual(['shop_orders', 'local', 'Ready', '5s', '/var/lib/d2p/volumes/shop/orders/_data']);
  });

  it('Events: LAST SEEN (with repeats), TYPE, REASON, OBJECT as kind/name, MESSAGE', () => {
    const ev = {
      ...obj('Event', 'web.1'),
      involvedObject: { kind: 'Container', name: 'shop-web-1', namespace: 'shop' },
      type: 'Warning',
      reason: 'BackOff',
      message: 'restarting failed container\nagain',
      count: 4,
      firstTimestamp: ago(600),
      lastTimestamp: ago(120),
    } as EventObject;
    const lines = printTable('Event', [ev], opts).split('\n');
    expect(lines[0].split(/\s{3,}/)).toEqual(['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE']);
    expect(lines[1].split(/\s{3,}/)).toEqual(['2m (x4 over 10m)', 'Warning', 'BackOff', 'container/shop-web-1', 'restarting failed container again']);
  });

  it('-A puts NAMESPACE first, --show-labels adds sorted LABELS last, get all prefixes kind/', () => {
    const vol = obj('Volume', 'data', { metadata: { name: 'data', namespace: 'shop', creationTimestamp: ago(5), labels: { z: '1', a: '2' } } });
    const lines = printTable('Volume', [vol], { now: NOW, allNamespaces: true, showLabels: true, kindPrefix: true }).split('\n');
    expect(lines[0].split(/\s{3,}/)).toEqual(['NAMESPACE', 'NAME', 'DRIVER', 'STATUS', 'AGE', 'LABELS']);
    expect(lines[1].split(/\s{3,}/)).toEqual(['shop', 'volume/data', 'local', 'Pending', '5s', 'a=2,z=1']);
  });

  it('aligns every row of a multi-row table under its header', () => {
    const table = printTable('Service', [
      obj('Service', 'a', { spec: { replicas: 1, template: { spec: { image: 'a-very-long-image-reference:1.2.3' } } } }),
      obj('Service', 'a-much-longer-service-name', { spec: { replicas: 10, template: { spec: { image: 'b' } } }, status: { readyReplicas: 10 } }),
    ], opts);
    const starts = columnStarts(table);
    expect(starts[1]).toEqual(starts[0]);
    expect(starts[2]).toEqual(starts[0]);
  });
});

describe('StreamingTable (get -w)', () => {
  it('pads later rows to the first table and widens for longer cells', () => {
    const t = new StreamingTable('Volume', { now: NOW });
    const first = t.start([obj('Volume', 'a')], true);
    const header = first.split('\n')[0];
    const later = t.row(obj('Volume', 'b'));
    expect(later.indexOf('local')).toBe(header.indexOf('DRIVER'));
    const longer = t.row(obj('Volume', 'a-volume-with-a-very-long-name'));
    expect(longer.startsWith('a-volume-with-a-very-long-name   local')).toBe(true);
  });
});

describe('-o name|json|yaml', () => {
  const a = obj('Service', 'web');
  const b = obj('Container', 'web-1');

  it('-o name prints kind/name per line', () => {
    expect(formatNames([a, b])).toBe('service/web\ncontainer/web-1\n');
  });

  it('one object asked by name is printed as itself; otherwise a List, as kubectl', () => {
    expect(JSON.parse(formatStructured([a], 'json', true))).toEqual(a);
    const list = JSON.parse(formatStructured([a], 'json', false));
    expect(list).toMatchObject({ apiVersion: 'v1', kind: 'List', items: [a] });
    const YAML = require('yaml') as typeof import('yaml');
    const yamlList = YAML.parse(formatStructured([a, b], 'yaml', false));
    expect(yamlList.kind).toBe('List');
    expect(yamlList.items.map((o: ApiObject) => o.metadata.name)).toEqual(['web', 'web-1']);
    expect(YAML.parse(formatStructured([b], 'yaml', true))).toEqual(b);
  });

  it('indents JSON by 4 spaces as kubectl', () => {
    expect(formatStructured([a], 'json', true).split('\n')[1]).toBe('    "apiVersion": "d2p.dev/v1alpha1",');
  });
});

describe('sortForDisplay', () => {
  it('orders Events by last occurrence and other kinds by namespace then name', () => {
    const ev = (name: string, last: number) => ({ ...obj('Event', name), lastTimestamp: ago(last) }) as ApiObject;
    expect(sortForDisplay('Event', [ev('x', 10), ev('y', 100), ev('z', 50)]).map((o) => o.metadata.name)).toEqual(['y', 'z', 'x']);
    const v = (ns: string, name: string) => obj('Volume', name, { metadata: { name, namespace: ns } });
    expect(sortForDisplay('Volume', [v('b', 'a'), v('a', 'z'), v('a', 'b')]).map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).toEqual(['a/b', 'a/z', 'b/a']);
  });
});
