import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { describe, expect, it } from 'vitest';
import { formatDuration, InvalidDurationError, parseDuration } from '../../src/api/duration';
import { ApiError, isApiError, type StatusCause } from '../../src/api/errors';
import { KINDS } from '../../src/api/meta';
import { InvalidByteSizeError, parseBytes } from '../../src/api/quantity';
import type { Container, KindName, Service } from '../../src/api/types';
import { readKindSchema, validateKind, validateObject, validateSpecOnly, validateStatusOnly } from '../../src/api/validate';

const API = 'd2p.dev/v1alpha1';
const SCHEMA_DIR = path.resolve(__dirname, '../../crd-schemas');

// ------------------------------------------------------------------ fixtures

const fullContainerSpec = () => ({
  image: 'registry.local:5000/shop/web:1.2@sha256:' + 'a'.repeat(64),
  imagePullPolicy: 'IfNotPresent',
  entrypoint: [],
  command: ['nginx', '-g', 'daemon off;'],
  env: [{ name: 'A', value: '1' }, { name: 'A', value: '2' }],
  workingDir: '/srv',
  user: '1000:1000',
  hostname: 'web',
  domainname: 'example.test',
  mounts: [
    { type: 'volume', source: 'shop_data', target: '/data', readOnly: true, volume: { nocopy: true } },
    { type: 'volume', target: '/anon' },
    { type: 'bind', source: '/etc/hosts', target: '/etc/hosts', bind: { propagation: 'rprivate', createHostPath: false } },
    { type: 'tmpfs', target: '/tmp', tmpfs: { size: 1048576, mode: 0o1777 } },
  ],
  ports: [{ containerPort: 80, hostPort: 8080, hostIP: '127.0.0.1', protocol: 'tcp' }, { containerPort: 53, protocol: 'udp' }, { containerPort: 443 }],
  networks: [{ name: 'shop_default', aliases: ['www'], ipv4Address: '172.20.0.5' }],
  networkMode: 'bridge',
  resources: { cpus: 0.5, memory: 536870912, memoryReservation: 1024, pids: -1, cpuShares: 512 },
  healthcheck: { test: ['CMD-SHELL', 'curl -f http://localhost/'], interval: '30s', timeout: '1m30s', retries: 3, startPeriod: '0', startInterval: '500ms', disable: false },
  restartPolicy: 'on-failure',
  maxRetries: 5,
  stopSignal: 'SIGQUIT',
  stopGracePeriod: '10s',
  capAdd: ['NET_ADMIN'],
  capDrop: ['ALL'],
  readOnlyRootfs: true,
  init: true,
  privileged: false,
  tty: true,
  stdinOpen: true,
  extraHosts: [{ hostname: 'host.docker.internal', ip: 'host-gateway' }, { hostname: 'db6', ip: 'fd00::2' }],
  dns: ['1.1.1.1', '2606:4700:4700::1111'],
  ulimits: [{ name: 'nofile', soft: 1024, hard: 4096 }],
  sysctls: { 'net.core.somaxconn': '1024' },
  shmSize: 67108864,
  logging: { driver: 'json-file', options: { 'max-size': '10m' } },
  dependsOn: [{ name: 'db', condition: 'service_healthy', required: true, restart: true }],
});

const meta = (name: string) => ({
  name,
  namespace: 'shop',
  uid: '6f1c1c1e-0000-4000-8000-000000000001',
  labels: { 'com.docker.compose.project': 'shop', 'com.docker.compose.service': 'web' },
  annotations: { note: 'x' },
  resourceVersion: '42',
  generation: 3,
  creationTimestamp: '2024-05-01T12:00:00Z',
  finalizers: ['d2p.dev/cleanup'],
  ownerReferences: [{ apiVersion: API, kind: 'Service', name: 'web', uid: 'u-1', controller: true, blockOwnerDeletion: true }],
});

const conditions = [
  { type: 'Ready', status: 'True', reason: 'Running', message: 'ok', lastTransitionTime: '2024-05-01T12:00:01.5+02:00', observedGeneration: 3 },
];

/** One valid object of every kind, with every spec and status field the contract lists. */
function validExamples(): Record<KindName, Record<string, unknown>> {
  return {
    Image: {
      apiVersion: API,
      kind: 'Image',
      metadata: meta('nginx-1.27'),
      spec: { ref: 'nginx:1.27', platform: 'linux/arm/v7' },
      status: {
        observedGeneration: 3,
        conditions,
        phase: 'Ready',
        digest: 'sha256:' + 'b'.repeat(64),
        size: 123,
        layers: [{ digest: 'sha256:' + 'c'.repeat(64), size: 100, diffID: 'sha256:' + 'd'.repeat(64), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }],
        config: {
          env: ['PATH=/usr/bin'],
          cmd: ['nginx'],
          entrypoint: ['/docker-entrypoint.sh'],
          workingDir: '/',
          user: 'nginx',
          exposedPorts: ['80/tcp'],
          volumes: ['/var/cache'],
          labels: { maintainer: 'x' },
          stopSignal: 'SIGQUIT',
          healthcheck: { test: ['CMD', 'true'], interval: '5s', timeout: '1s', startPeriod: '0s', startInterval: '1s', retries: 2 },
        },
      },
    },
    Build: {
      apiVersion: API,
      kind: 'Build',
      metadata: meta('web'),
      spec: { context: './web', dockerfile: 'Dockerfile.prod', target: 'runtime', args: { VERSION: '1' }, tags: ['shop-web:latest'], noCache: true, platform: 'linux/amd64' },
      status: { observedGeneration: 1, conditions, phase: 'Succeeded', imageDigest: 'sha256:' + 'e'.repeat(64), cacheHits: 3, steps: 7 },
    },
    Volume: {
      apiVersion: API,
      kind: 'Volume',
      metadata: meta('shop_data'),
      spec: { driver: 'local', driverOpts: { type: 'tmpfs', device: 'tmpfs' }, external: false },
      status: { observedGeneration: 1, conditions, phase: 'Ready', mountpoint: '/var/lib/d2p/volumes/shop/shop_data/_data' },
    },
    Network: {
      apiVersion: API,
      kind: 'Network',
      metadata: meta('shop_default'),
      spec: { driver: 'bridge', subnet: '172.20.0.0/16', gateway: '172.20.0.1', ipRange: '172.20.5.0/24', internal: false, mtu: 1500, driverOpts: { a: 'b' }, external: false },
      status: { observedGeneration: 1, conditions, phase: 'Ready', bridge: 'd2p-0a1b2c3d', subnet: '172.20.0.0/16', gateway: '172.20.0.1', allocations: { 'shop/shop-web-1': '172.20.0.2' } },
    },
    Container: {
      apiVersion: API,
      kind: 'Container',
      metadata: meta('shop-web-1'),
      spec: fullContainerSpec(),
      status: {
        observedGeneration: 3,
        conditions,
        phase: 'Running',
        pid: 4242,
        ipAddresses: { shop_default: '172.20.0.2' },
        startedAt: '2024-05-01T12:00:02Z',
        finishedAt: '2024-05-01T12:10:02Z',
        exitCode: 137,
        oomKilled: false,
        restartCount: 1,
        health: 'healthy',
        message: 'up',
      },
    },
    Service: {
      apiVersion: API,
      kind: 'Service',
      metadata: meta('web'),
      spec: {
        replicas: 2,
        template: { metadata: { labels: { tier: 'front' }, annotations: { a: 'b' } }, spec: fullContainerSpec() },
        dependsOn: [{ name: 'db', condition: 'service_completed_successfully' }],
      },
      status: { observedGeneration: 3, conditions, replicas: 2, readyReplicas: 1, updatedReplicas: 2, templateHash: '5d8c7f' },
    },
    Event: {
      apiVersion: API,
      kind: 'Event',
      metadata: { name: 'shop-web-1.17c1', namespace: 'shop' },
      involvedObject: { kind: 'Container', namespace: 'shop', name: 'shop-web-1', uid: 'u-2' },
      type: 'Warning',
      reason: 'BackOff',
      message: 'restarting failed container',
      count: 2,
      firstTimestamp: '2024-05-01T12:00:00Z',
      lastTimestamp: '2024-05-01T12:01:00Z',
      source: { component: 'container-controller' },
    },
    Source: {
      apiVersion: API,
      kind: 'Source',
      metadata: { name: 'apps', namespace: 'd2p-system' },
      spec: { path: '/srv/d2p/apps', prune: true, interval: '30s' },
      status: {
        observedGeneration: 1,
        conditions,
        phase: 'Degraded',
        lastAppliedRevision: `sha256:${'ab'.repeat(32)}`,
        gitCommit: 'c0ffee'.repeat(6) + 'c0ff',
        lastSyncTime: '2024-05-01T12:01:00Z',
        files: [
          { path: 'shop/compose.yml', objects: 6 },
          { path: 'broken.yaml', objects: 0, error: 'broken.yaml:3:1: unknown field "kindd"' },
        ],
      },
    },
  };
}

const minimalService = () => ({
  apiVersion: API,
  kind: 'Service',
  metadata: { name: 'web' },
  spec: { template: { spec: { image: 'nginx', ports: [{ containerPort: 80 }] } } },
});

function causesOf(fn: () => unknown): StatusCause[] {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(isApiError(thrown, 'Invalid'), `expected an Invalid ApiError, got ${String(thrown)}`).toBe(true);
  const error = thrown as ApiError;
  expect(error.httpCode).toBe(422);
  return error.details?.causes ?? [];
}

// ------------------------------------------------------------------ valid objects

describe('valid objects', () => {
  const examples = validExamples();

  it('has an example for every kind the API serves', () => {
    expect(Object.keys(examples).sort()).toEqual(KINDS.map((k) => k.kind).sort());
  });

  for (const [kind, example] of Object.entries(examples)) {
    it(`accepts a complete ${kind} and returns an equal copy without touching the input`, () => {
      const before = structuredClone(example);
      const out = validateObject(example);
      expect(out).not.toBe(example);
      expect(example).toEqual(before);
      // Every field was given, so the only additions can be defaults of nested objects.
      expect(out).toMatchObject(before);
    });
  }

  it('defaults Image.spec.pullPolicy to IfNotPresent', () => {
    const out = validateObject({ apiVersion: API, kind: 'Image', metadata: { name: 'busybox' }, spec: { ref: 'busybox' } });
    expect(out.spec).toEqual({ ref: 'busybox', pullPolicy: 'IfNotPresent' });
  });

  it('fills a missing Volume or Network spec with its defaults', () => {
    expect(validateObject({ apiVersion: API, kind: 'Volume', metadata: { name: 'data' } }).spec).toEqual({ driver: 'local' });
    expect(validateObject({ apiVersion: API, kind: 'Network', metadata: { name: 'front' } }).spec).toEqual({ driver: 'bridge' });
  });

  it('defaults replicas, restart policy, network mode, port protocol and dependency condition', () => {
    const input = minimalService();
    (input.spec.template.spec as Record<string, unknown>).dependsOn = [{ name: 'db' }];
    const out = validateObject(input) as Service;
    expect(out.spec?.replicas).toBe(1);
    const spec = out.spec!.template.spec;
    expect(spec.restartPolicy).toBe('no');
    expect(spec.networkMode).toBe('bridge');
    expect(spec.ports).toEqual([{ containerPort: 80, protocol: 'tcp' }]);
    expect(spec.dependsOn).toEqual([{ name: 'db', condition: 'service_started' }]);
  });

  it('keeps explicit values over defaults', () => {
    const input = minimalService();
    Object.assign(input.spec, { replicas: 0 });
    Object.assign(input.spec.template.spec, { restartPolicy: 'always', networkMode: 'service:db' });
    const out = validateObject(input) as Service;
    expect(out.spec?.replicas).toBe(0);
    expect(out.spec?.template.spec.restartPolicy).toBe('always');
    expect(out.spec?.template.spec.networkMode).toBe('service:db');
  });

  it('accepts the healthcheck test forms Docker accepts', () => {
    for (const test of [['NONE'], ['CMD', 'true'], ['CMD', 'curl', '-f', 'http://x/'], ['CMD-SHELL', 'exit 0']]) {
      const input = minimalService();
      Object.assign(input.spec.template.spec, { healthcheck: { test } });
      expect((validateObject(input) as Service).spec?.template.spec.healthcheck?.test).toEqual(test);
    }
  });

  it('types the result with validateKind', () => {
    const example = validExamples().Container;
    const container: Container = validateKind('Container', example);
    expect(container.spec?.ports?.[0].containerPort).toBe(80);
  });
});

// ------------------------------------------------------------------ invalid objects

type Mutation = (o: Record<string, any>) => void;

interface InvalidCase {
  what: string;
  kind: KindName;
  mutate: Mutation;
  field: string | undefined;
  message: string | RegExp;
}

const invalidCases: InvalidCase[] = [
  { what: 'autoRemove with a restart policy (docker refuses --rm with --restart)', kind: 'Container', mutate: (o) => Object.assign(o.spec, { autoRemove: true, restartPolicy: 'always' }), field: 'spec.restartPolicy', message: 'must be "no"' },
  { what: 'autoRemove in a Service template (the Service would replace it)', kind: 'Service', mutate: (o) => (o.spec.template.spec.autoRemove = true), field: 'spec.template.spec.autoRemove', message: 'must be false' },
  { what: 'unknown top-level field', kind: 'Service', mutate: (o) => (o.foo = 1), field: 'foo', message: 'unknown field "foo"' },
  { what: 'unknown field in metadata', kind: 'Service', mutate: (o) => (o.metadata.colour = 'red'), field: 'metadata.colour', message: 'unknown field "colour"' },
  { what: 'unknown field deep in template.spec', kind: 'Service', mutate: (o) => (o.spec.template.spec.portz = []), field: 'spec.template.spec.portz', message: 'unknown field "portz"' },
  { what: 'unknown field in a port', kind: 'Service', mutate: (o) => (o.spec.template.spec.ports[0].hostport = 1), field: 'spec.template.spec.ports[0].hostport', message: 'unknown field "hostport"' },
  { what: 'unknown field in status', kind: 'Container', mutate: (o) => (o.status = { phase: 'Running', ip: '1.2.3.4' }), field: 'status.ip', message: 'unknown field "ip"' },
  { what: 'unknown field in an Event', kind: 'Event', mutate: (o) => (o.spec = {}), field: 'spec', message: 'unknown field "spec"' },
  { what: 'string port', kind: 'Service', mutate: (o) => (o.spec.template.spec.ports[0].containerPort = '80'), field: 'spec.template.spec.ports[0].containerPort', message: 'must be integer' },
  { what: 'fractional replicas', kind: 'Service', mutate: (o) => (o.spec.replicas = 1.5), field: 'spec.replicas', message: 'must be integer' },
  { what: 'negative replicas', kind: 'Service', mutate: (o) => (o.spec.replicas = -1), field: 'spec.replicas', message: 'must be >= 0' },
  { what: 'port out of range', kind: 'Service', mutate: (o) => (o.spec.template.spec.ports[0].containerPort = 70000), field: 'spec.template.spec.ports[0].containerPort', message: 'must be <= 65535' },
  { what: 'command as a string', kind: 'Service', mutate: (o) => (o.spec.template.spec.command = 'nginx -g x'), field: 'spec.template.spec.command', message: 'must be array' },
  { what: 'non-string label value', kind: 'Service', mutate: (o) => (o.metadata.labels = { 'com.docker.compose.project': 1 }), field: 'metadata.labels["com.docker.compose.project"]', message: 'must be string' },
  { what: 'bad pull policy', kind: 'Service', mutate: (o) => (o.spec.template.spec.imagePullPolicy = 'Sometimes'), field: 'spec.template.spec.imagePullPolicy', message: 'must be one of: Always, IfNotPresent, Never' },
  { what: 'bad restart policy', kind: 'Service', mutate: (o) => (o.spec.template.spec.restartPolicy = 'on-failure:3'), field: 'spec.template.spec.restartPolicy', message: 'must be one of: no, always, on-failure, unless-stopped' },
  { what: 'bad protocol', kind: 'Service', mutate: (o) => (o.spec.template.spec.ports[0].protocol = 'sctp'), field: 'spec.template.spec.ports[0].protocol', message: 'must be one of: tcp, udp' },
  { what: 'bad network mode', kind: 'Service', mutate: (o) => (o.spec.template.spec.networkMode = 'bridged'), field: 'spec.template.spec.networkMode', message: 'must be bridge, host, none, container:NAME or service:NAME' },
  { what: 'wrong apiVersion', kind: 'Service', mutate: (o) => (o.apiVersion = 'v1'), field: 'apiVersion', message: 'must be "d2p.dev/v1alpha1"' },
  { what: 'name starting with a dash', kind: 'Service', mutate: (o) => (o.metadata.name = '-web'), field: 'metadata.name', message: /^must start with a letter or digit/ },
  { what: 'name with a slash', kind: 'Volume', mutate: (o) => (o.metadata.name = 'a/b'), field: 'metadata.name', message: /^must start with a letter or digit/ },
  { what: 'name too long', kind: 'Volume', mutate: (o) => (o.metadata.name = 'a'.repeat(254)), field: 'metadata.name', message: /at most 253 characters/ },
  { what: 'bad network name reference', kind: 'Service', mutate: (o) => (o.spec.template.spec.networks = [{ name: 'no spaces' }]), field: 'spec.template.spec.networks[0].name', message: /^must start with a letter or digit/ },
  { what: 'bad image reference', kind: 'Image', mutate: (o) => (o.spec.ref = 'Nginx:latest'), field: 'spec.ref', message: /^must be an image reference/ },
  { what: 'duration without unit', kind: 'Service', mutate: (o) => (o.spec.template.spec.stopGracePeriod = '10'), field: 'spec.template.spec.stopGracePeriod', message: /^must be a duration such as "1m30s".*missing unit/ },
  { what: 'duration in words', kind: 'Service', mutate: (o) => (o.spec.template.spec.healthcheck = { test: ['NONE'], interval: '10 seconds' }), field: 'spec.template.spec.healthcheck.interval', message: /unknown unit " seconds"/ },
  { what: 'negative duration', kind: 'Service', mutate: (o) => (o.spec.template.spec.stopGracePeriod = '-1s'), field: 'spec.template.spec.stopGracePeriod', message: /must not be negative/ },
  { what: 'missing spec.ref', kind: 'Image', mutate: (o) => delete o.spec.ref, field: 'spec.ref', message: 'is required' },
  { what: 'missing metadata.name', kind: 'Volume', mutate: (o) => delete o.metadata.name, field: 'metadata.name', message: 'is required' },
  { what: 'missing metadata', kind: 'Volume', mutate: (o) => delete o.metadata, field: 'metadata', message: 'is required' },
  { what: 'missing template.spec', kind: 'Service', mutate: (o) => delete o.spec.template.spec, field: 'spec.template.spec', message: 'is required' },
  { what: 'missing image', kind: 'Container', mutate: (o) => delete o.spec.image, field: 'spec.image', message: 'is required' },
  { what: 'missing env value', kind: 'Container', mutate: (o) => (o.spec.env = [{ name: 'A' }]), field: 'spec.env[0].value', message: 'is required' },
  { what: 'env name with "="', kind: 'Container', mutate: (o) => (o.spec.env = [{ name: 'A=B', value: '' }]), field: 'spec.env[0].name', message: 'must be non-empty and must not contain "="' },
  { what: 'relative mount target', kind: 'Container', mutate: (o) => (o.spec.mounts = [{ type: 'tmpfs', target: 'tmp' }]), field: 'spec.mounts[0].target', message: 'must be an absolute path' },
  { what: 'bind mount without source', kind: 'Container', mutate: (o) => (o.spec.mounts = [{ type: 'bind', target: '/x' }]), field: 'spec.mounts[0].source', message: 'is required' },
  { what: 'bind mount with relative source', kind: 'Container', mutate: (o) => (o.spec.mounts = [{ type: 'bind', source: './x', target: '/x' }]), field: 'spec.mounts[0].source', message: 'must be an absolute path' },
  { what: 'volume mount with a path as source', kind: 'Container', mutate: (o) => (o.spec.mounts = [{ type: 'volume', source: '/srv', target: '/x' }]), field: 'spec.mounts[0].source', message: /^must start with a letter or digit/ },
  { what: 'bind options on a volume mount', kind: 'Container', mutate: (o) => (o.spec.mounts = [{ type: 'volume', source: 'd', target: '/x', bind: {} }]), field: 'spec.mounts[0].bind', message: 'is not allowed when type is "volume"' },
  { what: 'source on a tmpfs mount', kind: 'Container', mutate: (o) => (o.spec.mounts = [{ type: 'tmpfs', source: 'x', target: '/x' }]), field: 'spec.mounts[0].source', message: 'is not allowed when type is "tmpfs"' },
  { what: 'CMD-SHELL with two commands', kind: 'Container', mutate: (o) => (o.spec.healthcheck = { test: ['CMD-SHELL', 'a', 'b'] }), field: 'spec.healthcheck.test', message: 'must NOT have more than 2 items' },
  { what: 'healthcheck test with an unknown form', kind: 'Container', mutate: (o) => (o.spec.healthcheck = { test: ['RUN', 'x'] }), field: 'spec.healthcheck.test[0]', message: 'must be one of: CMD, CMD-SHELL, NONE' },
  { what: 'subnet with host bits', kind: 'Network', mutate: (o) => (o.spec.subnet = '172.20.0.1/16'), field: 'spec.subnet', message: /^must be a network in CIDR notation/ },
  { what: 'subnet prefix too long', kind: 'Network', mutate: (o) => (o.spec.subnet = '10.0.0.0/33'), field: 'spec.subnet', message: /^must be a network in CIDR notation/ },
  { what: 'gateway not an address', kind: 'Network', mutate: (o) => (o.spec.gateway = '172.20.0.256'), field: 'spec.gateway', message: 'must be an IPv4 or IPv6 address' },
  { what: 'bad network driver', kind: 'Network', mutate: (o) => (o.spec.driver = 'overlay'), field: 'spec.driver', message: 'must be one of: bridge, host, none' },
  { what: 'bad allocation key', kind: 'Network', mutate: (o) => (o.status.allocations = { 'no-slash': '172.20.0.2' }), field: 'status.allocations["no-slash"]', message: /^invalid key "no-slash"/ },
  { what: 'extra host with a name for ip', kind: 'Container', mutate: (o) => (o.spec.extraHosts = [{ hostname: 'a', ip: 'gateway' }]), field: 'spec.extraHosts[0].ip', message: 'must be an IP address or "host-gateway"' },
  { what: 'bad timestamp', kind: 'Container', mutate: (o) => (o.status.startedAt = 'yesterday'), field: 'status.startedAt', message: /^must be an RFC 3339 timestamp/ },
  { what: 'bad container phase', kind: 'Container', mutate: (o) => (o.status.phase = 'Up'), field: 'status.phase', message: /^must be one of: Pending, Creating, Running/ },
  { what: 'bad condition status', kind: 'Service', mutate: (o) => (o.status = { conditions: [{ type: 'Ready', status: 'yes' }] }), field: 'status.conditions[0].status', message: 'must be one of: True, False, Unknown' },
  { what: 'event without count', kind: 'Event', mutate: (o) => delete o.count, field: 'count', message: 'is required' },
  { what: 'bad event type', kind: 'Event', mutate: (o) => (o.type = 'Error'), field: 'type', message: 'must be one of: Normal, Warning' },
];

describe('invalid objects', () => {
  const baseFor = (kind: KindName): Record<string, any> =>
    kind === 'Service' ? minimalService() : structuredClone(validExamples()[kind]);

  for (const c of invalidCases) {
    it(`rejects ${c.what}`, () => {
      const obj = baseFor(c.kind);
      c.mutate(obj);
      const causes = causesOf(() => validateObject(obj));
      const atField = causes.filter((cause) => cause.field === c.field);
      expect(atField, `causes were ${JSON.stringify(causes)}`).toHaveLength(1);
      if (typeof c.message === 'string') expect(atField[0].message).toBe(c.message);
      else expect(atField[0].message).toMatch(c.message);
    });
  }

  it('reports every problem at once, and names the object in the message', () => {
    const obj: Record<string, any> = minimalService();
    obj.spec.template.spec.ports[0].containerPort = 'x';
    obj.spec.template.spec.restartPolicy = 'sometimes';
    obj.spec.bogus = true;
    let message = '';
    const causes = causesOf(() => {
      try {
        validateObject(obj);
      } catch (e) {
        message = (e as Error).message;
        throw e;
      }
    });
    expect(causes.map((c) => c.field).sort()).toEqual(
      ['spec.bogus', 'spec.template.spec.ports[0].containerPort', 'spec.template.spec.restartPolicy'].sort(),
    );
    expect(message).toMatch(/^Service "web" is invalid: /);
    expect(message).toContain('spec.bogus: unknown field "bogus"');
  });

  it('rejects an unknown or missing kind, listing the known ones', () => {
    const unknown = causesOf(() => validateObject({ apiVersion: API, kind: 'Pod', metadata: { name: 'p' } }));
    expect(unknown).toEqual([expect.objectContaining({ field: 'kind', message: expect.stringMatching(/^unknown kind "Pod".*known kinds: Image, Build/) })]);
    const missing = causesOf(() => validateObject({ apiVersion: API, metadata: { name: 'p' } }));
    expect(missing).toEqual([expect.objectContaining({ field: 'kind', message: 'is required' })]);
  });

  it('rejects something that is not an object', () => {
    for (const value of [null, 'Service', [minimalService()], 3]) {
      const causes = causesOf(() => validateObject(value));
      expect(causes[0].message).toMatch(/^must be an object/);
    }
  });

  it('validateKind rejects an object of another kind', () => {
    const causes = causesOf(() => validateKind('Container', minimalService()));
    expect(causes).toEqual([expect.objectContaining({ field: 'kind', message: 'must be "Container", not "Service"' })]);
  });
});

// ------------------------------------------------------------------ parts

describe('validateSpecOnly / validateStatusOnly', () => {
  it('defaults a spec and reports its fields under "spec."', () => {
    expect(validateSpecOnly('Image', { ref: 'busybox' })).toEqual({ ref: 'busybox', pullPolicy: 'IfNotPresent' });
    const causes = causesOf(() => validateSpecOnly('Service', { template: { spec: { image: 'nginx', foo: 1 } } }, 'web'));
    expect(causes).toEqual([expect.objectContaining({ field: 'spec.template.spec.foo', message: 'unknown field "foo"' })]);
  });

  it('validates a status under "status."', () => {
    expect(validateStatusOnly('Service', { replicas: 1 })).toEqual({ replicas: 1 });
    const causes = causesOf(() => validateStatusOnly('Container', { pid: -5 }));
    expect(causes).toEqual([expect.objectContaining({ field: 'status.pid', message: 'must be >= 0' })]);
  });

  it('refuses a spec or status for Event, which has neither', () => {
    expect(causesOf(() => validateSpecOnly('Event', {}))[0].field).toBe('spec');
    expect(causesOf(() => validateStatusOnly('Event', {}))[0].field).toBe('status');
  });
});

// ------------------------------------------------------------------ schema files

describe('schema files', () => {
  const files = fs.readdirSync(SCHEMA_DIR).filter((f) => f.endsWith('.json'));

  it('has one schema per kind plus common.json', () => {
    expect(files.sort()).toEqual([...KINDS.map((k) => `${k.kind.toLowerCase()}.json`), 'common.json'].sort());
    for (const k of KINDS) {
      const schema = readKindSchema(k.kind as KindName) as { properties: Record<string, { const?: string }> };
      expect(schema.properties.kind.const).toBe(k.kind);
      expect(schema.properties.apiVersion.const).toBe(API);
    }
  });

  it('are valid draft 2020-12 schemas (validate.ts skips this check at run time)', () => {
    const metaValidator = new Ajv2020({ strict: false });
    for (const f of files) {
      const schema = JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, f), 'utf8')) as Record<string, unknown>;
      expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
      const valid = metaValidator.validateSchema(schema);
      expect(metaValidator.errors ?? [], `${f}: ${metaValidator.errorsText()}`).toEqual([]);
      expect(valid).toBe(true);
    }
  });

  it('closes every object with properties (additionalProperties: false), so unknown fields are rejected', () => {
    const open: string[] = [];
    const walk = (node: unknown, where: string): void => {
      if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${where}/${i}`));
      if (typeof node !== 'object' || node === null) return;
      const schema = node as Record<string, unknown>;
      const isObjectType = schema.type === 'object';
      const isWithinIfThen = /\/(if|then)(\/|$)/.test(where);
      if (isObjectType && schema.properties !== undefined && schema.additionalProperties !== false && !isWithinIfThen) open.push(where);
      for (const [key, child] of Object.entries(schema)) walk(child, `${where}/${key}`);
    };
    for (const f of files) walk(JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, f), 'utf8')), f);
    expect(open).toEqual([]);
  });
});

// ------------------------------------------------------------------ durations

describe('parseDuration', () => {
  const good: [string, number][] = [
    ['0', 0],
    ['0s', 0],
    ['+5s', 5000],
    ['500ms', 500],
    ['10us', 0.01],
    ['10\u00b5s', 0.01],
    ['10\u03bcs', 0.01],
    ['1500ns', 0.0015],
    ['1.5s', 1500],
    ['1.1s', 1100],
    ['.5s', 500],
    ['1.s', 1000],
    ['1m30s', 90_000],
    ['1h2m3.5s', 3_723_500],
    ['2h', 7_200_000],
    ['1h1h', 7_200_000],
  ];
  for (const [input, ms] of good) {
    it(`parses ${JSON.stringify(input)} as ${ms} ms`, () => expect(parseDuration(input)).toBe(ms));
  }

  const bad: [string, RegExp][] = [
    ['', /empty string/],
    ['10', /missing unit/],
    ['1x', /unknown unit "x"/],
    ['10 s', /unknown unit " s"/],
    ['-1s', /must not be negative/],
    ['s', /expected a number/],
    ['1.2.3s', /missing unit/],
    ['+', /missing number/],
    ['3000000h', /too large/],
  ];
  for (const [input, why] of bad) {
    it(`rejects ${JSON.stringify(input)}, naming it`, () => {
      let thrown: unknown;
      try {
        parseDuration(input);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(InvalidDurationError);
      const error = thrown as InvalidDurationError;
      expect(error.code).toBe('D2P_INVALID_DURATION');
      expect(error.message).toContain(`invalid duration ${JSON.stringify(input)}`);
      expect(error.message).toMatch(why);
    });
  }
});

describe('formatDuration', () => {
  const table: [number, string][] = [
    [0, '0s'],
    [0.000001, '1ns'],
    [0.0015, '1.5\u00b5s'],
    [0.01, '10\u00b5s'],
    [1.5, '1.5ms'],
    [500, '500ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [90_000, '1m30s'],
    [3_600_000, '1h0m0s'],
    [3_723_500, '1h2m3.5s'],
    [-1500, '-1.5s'],
  ];
  for (const [ms, text] of table) {
    it(`formats ${ms} ms as ${text} (as Go's Duration.String)`, () => expect(formatDuration(ms)).toBe(text));
  }

  it('round-trips through parseDuration', () => {
    for (const ms of [0, 0.25, 7, 1234, 61_001, 86_400_000 + 0.5]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });

  it('rejects a non-finite number', () => {
    expect(() => formatDuration(Number.NaN)).toThrow(/not a finite number/);
  });
});

// ------------------------------------------------------------------ byte sizes

describe('parseBytes', () => {
  const good: [string | number, number][] = [
    [0, 0],
    [1048576, 1048576],
    ['1024', 1024],
    ['100b', 100],
    ['100k', 102_400],
    ['100K', 102_400],
    ['100kb', 102_400],
    ['100KiB', 102_400],
    ['512m', 536_870_912],
    ['512 MB', 536_870_912],
    ['1g', 1_073_741_824],
    ['1.5GB', 1_610_612_736],
    ['0.5k', 512],
    ['1t', 1024 ** 4],
    ['2p', 2 * 1024 ** 5],
  ];
  for (const [input, bytes] of good) {
    it(`parses ${JSON.stringify(input)} as ${bytes} bytes (go-units RAMInBytes, binary units)`, () => expect(parseBytes(input)).toBe(bytes));
  }

  const bad: (string | number)[] = ['', 'lots', '1x', '-1m', '1.2.3m', 1.5, -1, '1e3', 'm', '99999999p'];
  for (const input of bad) {
    it(`rejects ${JSON.stringify(input)}, naming it`, () => {
      let thrown: unknown;
      try {
        parseBytes(input);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(InvalidByteSizeError);
      expect((thrown as InvalidByteSizeError).code).toBe('D2P_INVALID_BYTE_SIZE');
      expect((thrown as Error).message).toContain(`invalid byte size ${JSON.stringify(input)}`);
    });
  }
});
