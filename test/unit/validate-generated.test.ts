// The validators generated at build time (ajv standalone code, hack/build-validators.js)
// must accept, default and reject exactly as the ones compiled at run time: same output
// objects, same Status messages and causes. vitest runs the sources, where no generated
// module exists, so the test generates one and runs a sample of every kind through both.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isApiError } from '../../src/api/errors';
import * as formatsModule from '../../src/api/formats';
import { KINDS } from '../../src/api/meta';
import {
  createObjectValidator,
  generateValidatorModule,
  loadGeneratedValidators,
  type GeneratedValidators,
  type ObjectValidator,
} from '../../src/api/validate';

const API = 'd2p.dev/v1alpha1';
const VALIDATE_SOURCE = path.resolve(__dirname, '../../src/api/validate.ts');

/**
 * Evaluates the generated module as Node would load it from dist/src/api/, except that its
 * `require("./formats")` gets the formats module of the sources.
 */
function evaluateGenerated(code: string): GeneratedValidators {
  const realRequire = createRequire(VALIDATE_SOURCE);
  const required: string[] = [];
  const requireForGenerated = (id: string): unknown => {
    required.push(id);
    return id === './formats' ? formatsModule : realRequire(id);
  };
  const module = { exports: {} as Record<string, unknown> };
  new Function('module', 'exports', 'require', code)(module, module.exports, requireForGenerated);
  // Local modules other than ./formats would not exist next to the file in dist/.
  expect(required.filter((id) => id.startsWith('.') && id !== './formats')).toEqual([]);
  return module.exports;
}

const generatedCode = generateValidatorModule();
const generated = evaluateGenerated(generatedCode);
const runtime: ObjectValidator = createObjectValidator();
const fromGenerated: ObjectValidator = createObjectValidator(generated);

type Outcome = { valid: true; object: unknown } | { valid: false; message: string; details: unknown };

function outcome(validator: ObjectValidator, input: unknown): Outcome {
  try {
    return { valid: true, object: validator.validateObject(structuredClone(input)) };
  } catch (err) {
    if (!isApiError(err)) throw err;
    return { valid: false, message: err.message, details: err.details };
  }
}

// ------------------------------------------------------------------ the sample

const meta = (name: string) => ({
  name,
  namespace: 'shop',
  uid: 'u-1',
  labels: { 'com.docker.compose.project': 'shop' },
  annotations: { note: 'x' },
  resourceVersion: '42',
  generation: 3,
  creationTimestamp: '2024-05-01T12:00:00Z',
  finalizers: ['d2p.dev/cleanup'],
  ownerReferences: [{ apiVersion: API, kind: 'Service', name: 'web', uid: 'u-1', controller: true }],
});

const conditions = [{ type: 'Ready', status: 'True', reason: 'Running', message: 'ok', lastTransitionTime: '2024-05-01T12:00:01.5+02:00', observedGeneration: 3 }];

const containerSpec = () => ({
  image: 'registry.local:5000/shop/web:1.2',
  command: ['nginx', '-g', 'daemon off;'],
  env: [{ name: 'A', value: '1' }],
  mounts: [
    { type: 'volume', source: 'shop_data', target: '/data', readOnly: true },
    { type: 'bind', source: '/etc/hosts', target: '/etc/hosts' },
    { type: 'tmpfs', target: '/tmp', tmpfs: { size: 1048576 } },
  ],
  ports: [{ containerPort: 80, hostPort: 8080, hostIP: '127.0.0.1' }, { containerPort: 53, protocol: 'udp' }],
  networks: [{ name: 'shop_default', aliases: ['www'], ipv4Address: '172.20.0.5' }],
  healthcheck: { test: ['CMD-SHELL', 'true'], interval: '30s', timeout: '1m30s', retries: 3 },
  stopGracePeriod: '10s',
  extraHosts: [{ hostname: 'gw', ip: 'host-gateway' }, { hostname: 'db6', ip: 'fd00::2' }],
  dependsOn: [{ name: 'db' }],
});

/** At least one valid object of every kind, minimal ones (defaults applied) and full ones. */
function validSamples(): Record<string, Record<string, unknown>> {
  return {
    'minimal Image': { apiVersion: API, kind: 'Image', metadata: { name: 'busybox' }, spec: { ref: 'busybox' } },
    'full Image': {
      apiVersion: API,
      kind: 'Image',
      metadata: meta('nginx'),
      spec: { ref: 'nginx:1.27', platform: 'linux/arm/v7', pullPolicy: 'Always' },
      status: { observedGeneration: 3, conditions, phase: 'Ready', digest: 'sha256:' + 'b'.repeat(64), size: 1 },
    },
    'minimal Build': { apiVersion: API, kind: 'Build', metadata: { name: 'web' }, spec: { context: './web' } },
    'minimal Volume': { apiVersion: API, kind: 'Volume', metadata: { name: 'data' } },
    'full Volume': { apiVersion: API, kind: 'Volume', metadata: meta('shop_data'), spec: { driver: 'local', driverOpts: { type: 'tmpfs' } }, status: { phase: 'Ready', mountpoint: '/x' } },
    'minimal Network': { apiVersion: API, kind: 'Network', metadata: { name: 'front' } },
    'full Network': {
      apiVersion: API,
      kind: 'Network',
      metadata: meta('shop_default'),
      spec: { driver: 'bridge', subnet: 'fd00:1::/64', gateway: 'fd00:1::1', internal: true },
      status: { phase: 'Ready', bridge: 'd2p-0a1b', allocations: { 'shop/web-1': '172.20.0.2' } },
    },
    'Container': {
      apiVersion: API,
      kind: 'Container',
      metadata: meta('shop-web-1'),
      spec: containerSpec(),
      status: { phase: 'Running', pid: 42, startedAt: '2024-05-01T12:00:02Z', restartCount: 1, conditions },
    },
    'minimal Service': { apiVersion: API, kind: 'Service', metadata: { name: 'web' }, spec: { template: { spec: { image: 'nginx', ports: [{ containerPort: 80 }] } } } },
    'full Service': { apiVersion: API, kind: 'Service', metadata: meta('web'), spec: { replicas: 2, template: { spec: containerSpec() } }, status: { replicas: 2, readyReplicas: 1 } },
    'Event': {
      apiVersion: API,
      kind: 'Event',
      metadata: { name: 'web-1.17c1', namespace: 'shop' },
      involvedObject: { kind: 'Container', namespace: 'shop', name: 'web-1' },
      type: 'Warning',
      reason: 'BackOff',
      message: 'restarting',
      count: 2,
      firstTimestamp: '2024-05-01T12:00:00Z',
      lastTimestamp: '2024-05-01T12:01:00Z',
    },
    'Source': { apiVersion: API, kind: 'Source', metadata: { name: 'apps' }, spec: { path: '/srv/apps' } },
  };
}

type Mutation = (o: Record<string, any>) => void;

/** Invalid variants of the samples: every keyword and format the error mapping handles. */
const invalidCases: [string, string, Mutation][] = [
  ['unknown field', 'minimal Service', (o) => (o.foo = 1)],
  ['unknown field deep', 'full Service', (o) => (o.spec.template.spec.portz = [])],
  ['string port', 'minimal Service', (o) => (o.spec.template.spec.ports[0].containerPort = '80')],
  ['port out of range', 'minimal Service', (o) => (o.spec.template.spec.ports[0].containerPort = 70000)],
  ['negative replicas', 'minimal Service', (o) => (o.spec.replicas = -1)],
  ['bad enum', 'minimal Service', (o) => (o.spec.template.spec.restartPolicy = 'sometimes')],
  ['wrong apiVersion (const)', 'minimal Volume', (o) => (o.apiVersion = 'v1')],
  ['bad name (pattern)', 'minimal Volume', (o) => (o.metadata.name = '-x')],
  ['name too long', 'minimal Volume', (o) => (o.metadata.name = 'a'.repeat(254))],
  ['bad image reference', 'minimal Image', (o) => (o.spec.ref = 'Nginx:latest')],
  ['missing required', 'minimal Image', (o) => delete o.spec.ref],
  ['missing metadata', 'minimal Volume', (o) => delete o.metadata],
  ['bad duration (format)', 'Container', (o) => (o.spec.stopGracePeriod = '10')],
  ['bad date-time', 'Container', (o) => (o.status.startedAt = 'yesterday')],
  ['bad ip', 'full Network', (o) => (o.spec.gateway = '172.20.0.256')],
  ['bad cidr', 'full Network', (o) => (o.spec.subnet = '172.20.0.1/16')],
  ['bad ip-or-host-gateway', 'Container', (o) => (o.spec.extraHosts[0].ip = 'gateway')],
  ['bad ipv4', 'Container', (o) => (o.spec.networks[0].ipv4Address = 'fd00::5')],
  ['option forbidden by type (false schema)', 'Container', (o) => (o.spec.mounts[2].source = 'x')],
  ['bind without source (if/then)', 'Container', (o) => delete o.spec.mounts[1].source],
  ['bad map key (propertyNames)', 'full Network', (o) => (o.status.allocations = { 'no-slash': '1.2.3.4' })],
  ['too many healthcheck items', 'Container', (o) => (o.spec.healthcheck.test = ['CMD-SHELL', 'a', 'b'])],
  ['non-string label', 'full Volume', (o) => (o.metadata.labels = { a: 1 })],
  ['relative path', 'Source', (o) => (o.spec.path = 'apps')],
  ['event without count', 'Event', (o) => delete o.count],
  ['several problems at once', 'full Service', (o) => {
    o.spec.replicas = 'two';
    o.spec.template.spec.ports[0].protocol = 'sctp';
    o.status.bogus = true;
  }],
];

// ------------------------------------------------------------------ tests

describe('generated validators', () => {
  it('exports a whole-object validator for every kind', () => {
    for (const { kind } of KINDS) expect(typeof generated[`${kind}#`], kind).toBe('function');
    expect(generated.schemaDigest).toMatch(/^[0-9a-f]{64}$/);
  });

  it('reach the custom formats through require("./formats")', () => {
    expect(generatedCode).toContain('require("./formats").formats');
  });

  for (const [what, sample] of Object.entries(validSamples())) {
    it(`accept ${what} and apply the same defaults as run-time compilation`, () => {
      const viaRuntime = outcome(runtime, sample);
      const viaGenerated = outcome(fromGenerated, sample);
      expect(viaRuntime.valid, JSON.stringify(viaRuntime)).toBe(true);
      expect(viaGenerated).toEqual(viaRuntime);
    });
  }

  for (const [what, sampleName, mutate] of invalidCases) {
    it(`reject ${what} with the same message and causes as run-time compilation`, () => {
      const input = structuredClone(validSamples()[sampleName]);
      mutate(input);
      const viaRuntime = outcome(runtime, input);
      const viaGenerated = outcome(fromGenerated, input);
      expect(viaRuntime.valid, `${sampleName} should be invalid after: ${what}`).toBe(false);
      expect(viaGenerated).toEqual(viaRuntime);
    });
  }

  it('leave spec and status validation to run-time compilation, with the same results', () => {
    const spec = { template: { spec: { image: 'nginx', ports: [{ containerPort: 'x' }] } } };
    const attempt = (v: ObjectValidator) => {
      try {
        return v.validatePart('Service', 'spec', spec, 'web');
      } catch (err) {
        if (!isApiError(err)) throw err;
        return err.details;
      }
    };
    expect(attempt(fromGenerated)).toEqual(attempt(runtime));
  });
});

describe('loadGeneratedValidators', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-validators-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('is undefined when there is no generated module (running from source)', () => {
    expect(loadGeneratedValidators(path.join(dir, 'validators.generated.js'))).toBeUndefined();
  });

  it('refuses a module generated from other schemas', () => {
    const file = path.join(dir, 'stale.js');
    fs.writeFileSync(file, 'exports.schemaDigest = "0000";\nexports["Volume#"] = function () { return true; };\n');
    expect(loadGeneratedValidators(file)).toBeUndefined();
  });

  it('loads a module generated from the schemas on disk', () => {
    const file = path.join(dir, 'fresh.js');
    fs.writeFileSync(file, `exports.schemaDigest = ${JSON.stringify(generated.schemaDigest)};\nexports["Volume#"] = function () { return true; };\n`);
    const loaded = loadGeneratedValidators(file);
    expect(typeof loaded?.['Volume#']).toBe('function');
  });
});
