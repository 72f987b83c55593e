import { describe, expect, it } from 'vitest';
import type { ApiObject, EventObject } from '../../src/api/meta';
import type { Container, ContainerPhase, Service } from '../../src/api/types';
import { isEventFor, isOwnedBy, renderDescribe, smartLabel } from '../../src/cli/describe';

const NOW = Date.parse('2024-05-01T12:00:00Z');
const ago = (seconds: number): string => new Date(NOW - seconds * 1000).toISOString();

const service: Service = {
  apiVersion: 'd2p.dev/v1alpha1',
  kind: 'Service',
  metadata: {
    name: 'api',
    namespace: 'shop',
    uid: 'svc-uid',
    generation: 2,
    creationTimestamp: ago(300),
    labels: { 'com.docker.compose.service': 'api', 'com.docker.compose.project': 'shop' },
  },
  spec: {
    replicas: 2,
    template: {
      spec: {
        image: 'busybox:stable',
        entrypoint: [],
        command: ['sh', '-c', 'exec httpd -f'],
        env: [{ name: 'SHOP_MODE', value: 'demo' }, { name: 'EMPTY', value: '' }],
        ports: [{ containerPort: 9000, hostPort: 9000, hostIP: '127.0.0.1', protocol: 'tcp' }],
        mounts: [{ type: 'volume', source: 'shop_orders', target: '/data' }, { type: 'tmpfs', target: '/tmp', tmpfs: { size: 1024 } }],
        sysctls: { 'net.core.somaxconn': '1024' },
      },
    },
  },
  status: {
    observedGeneration: 2,
    replicas: 2,
    readyReplicas: 1,
    conditions: [
      { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: '1 of 2 ready', lastTransitionTime: ago(60) },
    ],
  },
};

const container = (name: string, ownerUid: string, phase: ContainerPhase): Container => ({
  apiVersion: 'd2p.dev/v1alpha1',
  kind: 'Container',
  metadata: {
    name,
    namespace: 'shop',
    uid: `${name}-uid`,
    creationTimestamp: ago(200),
    ownerReferences: [{ apiVersion: 'd2p.dev/v1alpha1', kind: 'Service', name: 'api', uid: ownerUid, controller: true }],
  },
  spec: { image: 'busybox:stable' },
  status: { phase },
});

const event = (name: string, reason: string, lastSecondsAgo: number, extra: Partial<EventObject> = {}): EventObject => ({
  apiVersion: 'd2p.dev/v1alpha1',
  kind: 'Event',
  metadata: { name, namespace: 'shop', creationTimestamp: ago(lastSecondsAgo) },
  involvedObject: { kind: 'Service', namespace: 'shop', name: 'api', uid: 'svc-uid' },
  type: 'Normal',
  reason,
  message: `${reason} happened`,
  count: 1,
  firstTimestamp: ago(lastSecondsAgo),
  lastTimestamp: ago(lastSecondsAgo),
  source: { component: 'service-controller' },
  ...extra,
});

describe('renderDescribe', () => {
  const events = [
    event('e2', 'ScalingReplicaSet', 30, { count: 3, firstTimestamp: ago(240) }),
    event('e1', 'Created', 290, { type: 'Normal' }),
  ];
  const text = renderDescribe({ object: service, events, owned: [container('shop-api-2', 'svc-uid', 'Pending'), container('shop-api-1', 'svc-uid', 'Running')], now: NOW });
  const lines = text.split('\n');

  it('starts with the identity block, values aligned in one column', () => {
    const idx = (prefix: string) => lines.findIndex((l) => l.startsWith(prefix));
    expect(lines[idx('Name:')]).toMatch(/^Name:\s+api$/);
    expect(lines[idx('Namespace:')]).toMatch(/^Namespace:\s+shop$/);
    expect(lines[idx('Annotations:')]).toMatch(/^Annotations:\s+<none>$/);
    expect(lines[idx('Created:')]).toContain('(5m ago)');
    expect(lines[idx('Controlled By:')]).toMatch(/<none>$/);
    const column = lines[idx('Name:')].indexOf('api');
    expect(lines[idx('Namespace:')].indexOf('shop')).toBe(column);
    // Several labels: sorted, one per line, continuation lines under the value column.
    const labels = idx('Labels:');
    expect(lines[labels].slice(column)).toBe('com.docker.compose.project=shop');
    expect(lines[labels + 1]).toBe(`${' '.repeat(column)}com.docker.compose.service=api`);
  });

  it('renders the spec as indented blocks with readable labels', () => {
    const spec = text.slice(text.indexOf('Spec:\n'), text.indexOf('Status:\n'));
    expect(spec).toMatch(/^ {2}Replicas: {2}2$/m);
    expect(spec).toMatch(/^ {2}Template:$/m);
    expect(spec).toMatch(/^ {6}Image:\s+busybox:stable$/m);
    expect(spec).toMatch(/^ {6}Entrypoint:\s+\[\]$/m);
    expect(spec).toMatch(/^ {6}Command:\s+"sh" "-c" "exec httpd -f"$/m);
    expect(spec).toMatch(/^ {8}SHOP_MODE:\s+demo$/m);
    expect(spec).toMatch(/^ {8}EMPTY:\s+""$/m);
    expect(spec).toMatch(/^ {6}Ports:\s+127\.0\.0\.1:9000->9000\/tcp$/m);
    expect(spec).toMatch(/^ {8}- Type:\s+volume$/m);
    expect(spec).toMatch(/^ {10}Source:\s+shop_orders$/m);
    expect(spec).toMatch(/^ {10}Tmpfs:$/m);
    expect(spec).toMatch(/^ {12}Size:\s+1024$/m);
    // Map keys that are not identifiers stay verbatim.
    expect(spec).toMatch(/^ {8}net\.core\.somaxconn:\s+1024$/m);
  });

  it('renders status fields, then a Conditions table', () => {
    expect(text).toMatch(/^Status:\n {2}Observed Generation:\s+2\n {2}Replicas:\s+2\n {2}Ready Replicas:\s+1\n/m);
    const c = lines.indexOf('Conditions:');
    expect(lines[c + 1].split(/\s{2,}/).filter(Boolean)).toEqual(['Type', 'Status', 'Reason', 'Message', 'LastTransitionTime']);
    expect(lines[c + 2].trim().split(/\s{2,}/)).toEqual(['----', '------', '------', '-------', '------------------']);
    expect(lines[c + 3].trim().split(/\s{2,}/)).toEqual(['Available', 'False', 'MinimumReplicasUnavailable', '1 of 2 ready', `${ago(60)} (60s ago)`]);
  });

  it('lists owned objects sorted, and events oldest first with repeats', () => {
    const o = lines.indexOf('Owns:');
    expect(lines[o + 3].trim().split(/\s{2,}/)).toEqual(['Container', 'shop-api-1', 'Running', '3m20s']);
    expect(lines[o + 4].trim().split(/\s{2,}/)).toEqual(['Container', 'shop-api-2', 'Pending', '3m20s']);
    const e = lines.indexOf('Events:');
    expect(lines[e + 1].trim().split(/\s{2,}/)).toEqual(['Type', 'Reason', 'Age', 'From', 'Message']);
    expect(lines[e + 3].trim().split(/\s{2,}/)).toEqual(['Normal', 'Created', '4m50s', 'service-controller', 'Created happened']);
    expect(lines[e + 4].trim().split(/\s{2,}/)).toEqual(['Normal', 'ScalingReplicaSet', '30s (x3 over 4m)', 'service-controller', 'ScalingReplicaSet happened']);
  });

  it('says <none> for no events, no owned objects and no conditions, and names the controller', () => {
    const ctr = container('shop-api-1', 'svc-uid', 'Running');
    const out = renderDescribe({ object: { ...ctr, status: { phase: 'Running' } } as Container, events: [], owned: [], now: NOW });
    expect(out).toMatch(/^Events: {2}<none>$/m);
    expect(out).toMatch(/^Owns: {2}<none>$/m);
    expect(out).toMatch(/^Conditions: {2}<none>$/m);
    expect(out).toMatch(/^Controlled By:\s+Service\/api$/m);
  });
});

describe('relations', () => {
  it('matches events by kind, name, namespace and uid', () => {
    expect(isEventFor(event('e', 'X', 1), service)).toBe(true);
    expect(isEventFor(event('e', 'X', 1, { involvedObject: { kind: 'Service', name: 'api', uid: 'older-uid' } }), service)).toBe(false);
    expect(isEventFor(event('e', 'X', 1, { involvedObject: { kind: 'Container', name: 'api' } }), service)).toBe(false);
    expect(isEventFor(event('e', 'X', 1, { involvedObject: { kind: 'Service', name: 'api' } }), service)).toBe(true);
  });

  it('finds owned objects by owner uid', () => {
    expect(isOwnedBy(container('c', 'svc-uid', 'Running'), service)).toBe(true);
    expect(isOwnedBy(container('c', 'other', 'Running'), service)).toBe(false);
  });

  it('labels camelCase keys as kubectl does', () => {
    expect(smartLabel('containerPort')).toBe('Container Port');
    expect(smartLabel('readOnlyRootfs')).toBe('Read Only Rootfs');
    expect(smartLabel('com.docker.compose.project')).toBe('com.docker.compose.project');
  });
});
