// One Compose service → a Service object (its template is a ContainerSpec) plus what it
// needs built or pulled. Field by field as the compose-spec "services" reference and
// Docker Compose v2 read them; where a value cannot be honoured the loader warns.
import { isIPv4 } from 'node:net';
import { API_VERSION } from '../api/meta';
import {
  COMPOSE_LABELS,
  type Build,
  type ContainerSpec,
  type Dependency,
  type DependencyCondition,
  type EnvVar,
  type ExtraHost,
  type Healthcheck,
  type Mount,
  type NetworkAttachment,
  type PullPolicy,
  type Resources,
  type RestartPolicy,
  type Service,
  type Ulimit,
  type UlimitName,
} from '../api/types';
import { isKnownSignal } from '../runtime/signals';
import { ComposeError, type KeyPath, type Pos, type WarningSink } from './errors';
import { parseDotenv } from './dotenv';
import { readTextFile } from './errors';
import { get, isNull, type MapNode, type Node } from './node';
import { convertPorts } from './ports';
import {
  asKeyValueList,
  asMap,
  asSeq,
  fail,
  readBool,
  readBytes,
  readDuration,
  readInt,
  readNumber,
  readString,
  readStringList,
  readText,
  splitKeyValue,
} from './read';
import { fileMountTarget, readLabelList, type Declaration, type FileDeclaration } from './resources';
import { shellSplit, ShellSplitError } from './shellwords';
import { convertTmpfs, convertVolumes, resolveHostPath } from './volumes';

export interface ProjectContext {
  project: string;
  projectDir: string;
  env: Readonly<Record<string, string>>;
  home: string;
  warnings: WarningSink;
  display(abs: string): string;
  networks: ReadonlyMap<string, Declaration>;
  /** The `<project>_default` network, declared or implicit. */
  defaultNetwork: Declaration;
  volumes: ReadonlyMap<string, Declaration>;
  secrets: ReadonlyMap<string, FileDeclaration>;
  configs: ReadonlyMap<string, FileDeclaration>;
  /** Every service of the merged files, enabled or not, with its profiles. */
  allServices: ReadonlyMap<string, { profiles: string[] }>;
  enabledServices: ReadonlySet<string>;
}

export interface ConvertedService {
  service: Service;
  build?: Build;
  /** For a service with `image:` and no `build:`. */
  image?: { ref: string; pullPolicy: PullPolicy; pos: Pos };
  usesDefaultNetwork: boolean;
}

const has = (node: Node | undefined): node is Node => node !== undefined && !isNull(node);

function optional<T>(service: MapNode, key: string, at: KeyPath, read: (n: Node, p: KeyPath) => T): T | undefined {
  const node = get(service, key);
  return has(node) ? read(node, [...at, key]) : undefined;
}

export async function convertService(name: string, service: MapNode, keyPos: Pos, ctx: ProjectContext): Promise<ConvertedService> {
  const at: KeyPath = ['services', name];
  const spec = { image: '' } as ContainerSpec;
  const converted = imageAndBuild(name, service, keyPos, at, spec, ctx);
  setCommand(spec, 'entrypoint', service, at, ctx.warnings);
  setCommand(spec, 'command', service, at, ctx.warnings);
  const env = await environment(service, at, ctx);
  if (env.length > 0) spec.env = env;
  setStrings(spec, service, at);
  const mounts = collectMounts(service, at, ctx);
  if (mounts.length > 0) spec.mounts = mounts;
  const ports = optional(service, 'ports', at, (n, p) => convertPorts(n, p, ctx.warnings));
  if (ports && ports.length > 0) spec.ports = ports;
  const dependsOn = dependencies(name, service, at, ctx);
  const usesDefaultNetwork = networking(name, service, at, spec, dependsOn, ctx);
  const resources = resourceLimits(service, at);
  if (Object.keys(resources).length > 0) spec.resources = resources;
  const healthcheck = optional(service, 'healthcheck', at, (n, p) => convertHealthcheck(n, p, ctx.warnings));
  if (healthcheck) spec.healthcheck = healthcheck;
  setRestart(spec, service, at);
  setFlagsAndLists(spec, service, at);
  const replicas = replicaCount(service, at);

  const labels = { [COMPOSE_LABELS.project]: ctx.project, [COMPOSE_LABELS.service]: name };
  const userLabels = readLabelList(get(service, 'labels'), [...at, 'labels']);
  const containerName = optional(service, 'container_name', at, readString);
  if (containerName !== undefined && replicas > 1) {
    throw new ComposeError(`can't set container_name and run ${replicas} replicas of ${JSON.stringify(name)}: a container name must be unique`, { pos: keyPos, path: at });
  }
  const result: Service = {
    apiVersion: API_VERSION,
    kind: 'Service',
    metadata: {
      name,
      namespace: ctx.project,
      labels,
      ...(containerName !== undefined ? { annotations: { 'd2p.dev/container-name': containerName } } : {}),
    },
    spec: {
      replicas,
      template: { metadata: { labels: { ...userLabels, ...labels } }, spec },
      ...(dependsOn.length > 0 ? { dependsOn } : {}),
    },
  };
  return { ...converted, service: result, usesDefaultNetwork };
}

// ---------------------------------------------------------------------- image and build

const PULL_POLICIES: Record<string, PullPolicy> = {
  always: 'Always',
  missing: 'IfNotPresent',
  if_not_present: 'IfNotPresent',
  never: 'Never',
};

function readPullPolicy(service: MapNode, at: KeyPath, warnings: WarningSink): { policy?: string; node?: Node } {
  const node = get(service, 'pull_policy');
  if (!has(node)) return {};
  const policy = readString(node, [...at, 'pull_policy']);
  if (policy in PULL_POLICIES || policy === 'build') return { policy, node };
  if (/^(refresh|daily|weekly|every_([0-9]+[wdhms])+)$/.test(policy)) {
    warnings.add(node.pos, [...at, 'pull_policy'], `pull_policy ${JSON.stringify(policy)} is not supported by d2p; the image is pulled only when missing`);
    return { policy: 'missing', node };
  }
  fail(node, [...at, 'pull_policy'], `invalid pull_policy ${JSON.stringify(policy)} (expected always, never, missing, if_not_present or build)`);
}

function imageAndBuild(name: string, service: MapNode, keyPos: Pos, at: KeyPath, spec: ContainerSpec, ctx: ProjectContext): Omit<ConvertedService, 'service' | 'usesDefaultNetwork'> {
  const imageNode = get(service, 'image');
  const image = has(imageNode) ? readString(imageNode, [...at, 'image']) : undefined;
  const buildNode = get(service, 'build');
  const { policy, node: policyNode } = readPullPolicy(service, at, ctx.warnings);
  if (has(buildNode)) {
    // The image a build produces is named by `image:`, else "<project>-<service>" as Compose v2 does.
    const tag = image ?? `${ctx.project}-${name}`;
    spec.image = tag;
    spec.imagePullPolicy = 'Never';
    return { build: buildObject(name, buildNode, [...at, 'build'], tag, ctx) };
  }
  if (image === undefined) {
    throw new ComposeError(`service ${JSON.stringify(name)} has neither an image nor a build context specified`, { pos: keyPos, path: at });
  }
  if (policy === 'build' && policyNode) fail(policyNode, [...at, 'pull_policy'], 'pull_policy "build" needs a build section');
  const pullPolicy = PULL_POLICIES[policy ?? 'missing'];
  spec.image = image;
  spec.imagePullPolicy = pullPolicy;
  return { image: { ref: image, pullPolicy, pos: (imageNode as Node).pos } };
}

const isRemoteContext = (p: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(p) || p.startsWith('git@') || p.startsWith('github.com/');

function buildObject(name: string, node: Node, at: KeyPath, tag: string, ctx: ProjectContext): Build {
  const build = asMap(node, at);
  const context = optional(build, 'context', at, readString) ?? '.';
  const spec: Build['spec'] = { context: isRemoteContext(context) ? context : resolveHostPath(context, ctx.projectDir, ctx.home) };
  const dockerfile = optional(build, 'dockerfile', at, readString);
  if (dockerfile !== undefined) spec.dockerfile = dockerfile;
  const target = optional(build, 'target', at, readString);
  if (target !== undefined) spec.target = target;
  const args = buildArgs(get(build, 'args'), [...at, 'args'], ctx.env);
  if (Object.keys(args).length > 0) spec.args = args;
  const extraTags = optional(build, 'tags', at, readStringList) ?? [];
  spec.tags = [tag, ...extraTags.filter((t) => t !== tag)];
  if (optional(build, 'no_cache', at, readBool)) spec.noCache = true;
  return {
    apiVersion: API_VERSION,
    kind: 'Build',
    metadata: { name, namespace: ctx.project, labels: { [COMPOSE_LABELS.project]: ctx.project, [COMPOSE_LABELS.service]: name } },
    spec,
  };
}

/** "KEY=value", or "KEY" alone: taken from the environment, left out when unset (as Compose). */
function buildArgs(node: Node | undefined, at: KeyPath, env: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  if (!has(node)) return out;
  asKeyValueList(node, at).items.forEach((item, i) => {
    const [key, value] = splitKeyValue(readText(item, [...at, i]));
    const resolved = value ?? env[key];
    if (resolved !== undefined) out[key] = resolved;
  });
  return out;
}

// ---------------------------------------------------------------------- command, env, strings

function setCommand(spec: ContainerSpec, key: 'entrypoint' | 'command', service: MapNode, at: KeyPath, warnings: WarningSink): void {
  const node = get(service, key);
  if (!has(node)) return;
  const here = [...at, key];
  if (node.kind === 'seq') {
    spec[key] = node.items.map((item, i) => readText(item, [...here, i]));
    return;
  }
  const line = readString(node, here);
  try {
    const { words, dropped } = shellSplit(line);
    if (dropped !== undefined) {
      warnings.add(node.pos, here, `Compose drops everything from the unquoted shell operator on: ${JSON.stringify(dropped)} is not run; use a list, or ["sh", "-c", "..."]`);
    }
    spec[key] = words;
  } catch (err) {
    if (err instanceof ShellSplitError) fail(node, here, err.message);
    throw err;
  }
}

/** env_file entries, then `environment:`, in order; a later value wins (compose-go resolveEnvironment). */
async function environment(service: MapNode, at: KeyPath, ctx: ProjectContext): Promise<EnvVar[]> {
  const vars = new Map<string, string>();
  const envFiles = get(service, 'env_file');
  if (has(envFiles)) {
    const items = asSeq(envFiles, [...at, 'env_file']).items;
    for (const [i, item] of items.entries()) {
      for (const { key, value } of await readEnvFile(item, [...at, 'env_file', i], ctx)) vars.set(key, value);
    }
  }
  const list = get(service, 'environment');
  if (has(list)) {
    asKeyValueList(list, [...at, 'environment']).items.forEach((item, i) => {
      const [key, value] = splitKeyValue(readText(item, [...at, 'environment', i]));
      if (key === '') fail(item, [...at, 'environment', i], 'environment variable name is empty');
      // A bare KEY takes its value from the environment Compose runs in; unset, it is unset.
      const resolved = value ?? ctx.env[key];
      if (resolved === undefined) vars.delete(key);
      else vars.set(key, resolved);
    });
  }
  return [...vars].map(([name, value]) => ({ name, value }));
}

async function readEnvFile(item: Node, at: KeyPath, ctx: ProjectContext): Promise<{ key: string; value: string }[]> {
  const pathNode = item.kind === 'map' ? get(item, 'path') : item;
  if (!has(pathNode)) fail(item, at, 'path is required');
  const relative = readString(pathNode, item.kind === 'map' ? [...at, 'path'] : at);
  const requiredNode = get(item, 'required');
  const required = has(requiredNode) ? readBool(requiredNode, [...at, 'required']) : true;
  const format = get(item, 'format');
  if (has(format)) ctx.warnings.add(format.pos, [...at, 'format'], 'env_file format is not supported by d2p; the file is read with the .env syntax');
  const abs = resolveHostPath(relative, ctx.projectDir, ctx.home);
  let text: string;
  try {
    text = await readTextFile(abs, ctx.display(abs), 'env file');
  } catch (err) {
    if (err instanceof ComposeError && err.errno === 'ENOENT') {
      if (!required) return [];
      fail(pathNode, at, `env file ${ctx.display(abs)} not found`);
    }
    throw err;
  }
  return parseDotenv(text, ctx.display(abs), (k) => ctx.env[k]);
}

function setStrings(spec: ContainerSpec, service: MapNode, at: KeyPath): void {
  const workingDir = optional(service, 'working_dir', at, readString);
  if (workingDir !== undefined) {
    if (!workingDir.startsWith('/')) fail(get(service, 'working_dir') as Node, [...at, 'working_dir'], `working_dir ${JSON.stringify(workingDir)} must be an absolute path`);
    spec.workingDir = workingDir;
  }
  // `user: 1000` is common; Docker takes "uid[:gid]" text either way.
  const user = optional(service, 'user', at, readText);
  if (user !== undefined && user !== '') spec.user = user;
  const hostname = optional(service, 'hostname', at, readString);
  if (hostname !== undefined && hostname !== '') spec.hostname = hostname;
  const domainname = optional(service, 'domainname', at, readString);
  if (domainname !== undefined && domainname !== '') spec.domainname = domainname;
  const stopSignal = optional(service, 'stop_signal', at, readString);
  if (stopSignal !== undefined) {
    // Refused here, as Docker refuses it at create: a signal nothing can send would leave
    // the container impossible to stop.
    if (!isKnownSignal(stopSignal)) fail(get(service, 'stop_signal')!, [...at, 'stop_signal'], `invalid signal ${JSON.stringify(stopSignal)} (expected a signal name such as SIGTERM or TERM, or a number 1-64)`);
    spec.stopSignal = stopSignal;
  }
  const grace = optional(service, 'stop_grace_period', at, readDuration);
  if (grace !== undefined) spec.stopGracePeriod = grace;
}

// ---------------------------------------------------------------------- mounts

function collectMounts(service: MapNode, at: KeyPath, ctx: ProjectContext): Mount[] {
  const mountCtx = {
    warnings: ctx.warnings,
    hostPath: (source: string) => resolveHostPath(source, ctx.projectDir, ctx.home),
    volumeName: (key: string, node: Node, where: KeyPath) => {
      const decl = ctx.volumes.get(key);
      if (!decl) fail(node, where, `service ${JSON.stringify(at[1])} refers to undefined volume ${JSON.stringify(key)}: declare it under the top-level volumes key`);
      return decl.objectName;
    },
  };
  const volumes = get(service, 'volumes');
  const tmpfs = get(service, 'tmpfs');
  const mounts = [
    ...(has(volumes) ? convertVolumes(volumes, [...at, 'volumes'], mountCtx) : []),
    ...(has(tmpfs) ? convertTmpfs(tmpfs, [...at, 'tmpfs'], ctx.warnings) : []),
    ...fileMounts('secrets', service, at, ctx),
    ...fileMounts('configs', service, at, ctx),
  ];
  const seen = new Set<string>();
  for (const m of mounts) {
    // Docker refuses two mounts on one target ("Duplicate mount point").
    if (seen.has(m.target)) throw new ComposeError(`duplicate mount point ${JSON.stringify(m.target)}`, { pos: service.pos, path: at });
    seen.add(m.target);
  }
  return mounts;
}

/** Secrets and configs are read-only bind mounts of their `file:`. */
function fileMounts(kind: 'secrets' | 'configs', service: MapNode, at: KeyPath, ctx: ProjectContext): Mount[] {
  const node = get(service, kind);
  if (!has(node)) return [];
  const decls = kind === 'secrets' ? ctx.secrets : ctx.configs;
  const mounts: Mount[] = [];
  asSeq(node, [...at, kind]).items.forEach((item, i) => {
    const here = [...at, kind, i];
    const sourceNode = item.kind === 'map' ? get(item, 'source') : item;
    if (!has(sourceNode)) fail(item, here, 'source is required');
    const source = readString(sourceNode, item.kind === 'map' ? [...here, 'source'] : here);
    const decl = decls.get(source);
    if (!decl) fail(sourceNode, here, `service ${JSON.stringify(at[1])} refers to undefined ${kind.slice(0, -1)} ${JSON.stringify(source)}`);
    if (decl.file === undefined) {
      ctx.warnings.add(item.pos, here, `${kind.slice(0, -1)} ${JSON.stringify(source)} has no file: d2p mounts only file-based ${kind}; it is not mounted`);
      return;
    }
    const targetNode = item.kind === 'map' ? get(item, 'target') : undefined;
    const target = has(targetNode) ? readString(targetNode, [...here, 'target']) : undefined;
    mounts.push({ type: 'bind', source: decl.file, target: fileMountTarget(kind, source, target), readOnly: true });
  });
  return mounts;
}

// ---------------------------------------------------------------------- dependencies and networks

const CONDITIONS: readonly DependencyCondition[] = ['service_started', 'service_healthy', 'service_completed_successfully'];

function dependencies(name: string, service: MapNode, at: KeyPath, ctx: ProjectContext): Dependency[] {
  const node = get(service, 'depends_on');
  if (!has(node)) return [];
  const here = [...at, 'depends_on'];
  if (node.kind === 'seq') node.items.forEach((item, i) => readString(item, [...here, i])); // reports the non-string
  const out: Dependency[] = [];
  for (const entry of asMap(node, here).entries.values()) {
    const dep = entry.key;
    const where = [...here, dep];
    const opts = isNull(entry.value) ? undefined : asMap(entry.value, where);
    const conditionNode = get(opts, 'condition');
    const condition = has(conditionNode) ? readString(conditionNode, [...where, 'condition']) : 'service_started';
    if (!(CONDITIONS as readonly string[]).includes(condition)) fail(conditionNode as Node, [...where, 'condition'], `invalid condition ${JSON.stringify(condition)} (expected ${CONDITIONS.join(', ')})`);
    const requiredNode = get(opts, 'required');
    const required = has(requiredNode) ? readBool(requiredNode, [...where, 'required']) : true;
    const restartNode = get(opts, 'restart');
    const restart = has(restartNode) ? readBool(restartNode, [...where, 'restart']) : false;
    if (!checkDependency(name, dep, required, entry.keyPos, where, ctx)) continue;
    out.push({ name: dep, condition: condition as DependencyCondition, ...(required ? {} : { required: false }), ...(restart ? { restart: true } : {}) });
  }
  return out;
}

/** False when an optional dependency is left out (disabled by its profiles). */
function checkDependency(name: string, dep: string, required: boolean, pos: Pos, where: KeyPath, ctx: ProjectContext): boolean {
  if (dep === name) throw new ComposeError(`service ${JSON.stringify(name)} depends on itself`, { pos, path: where });
  const target = ctx.allServices.get(dep);
  if (!target) throw new ComposeError(`service ${JSON.stringify(name)} depends on undefined service ${JSON.stringify(dep)}`, { pos, path: where });
  if (ctx.enabledServices.has(dep)) return true;
  const why = `service ${JSON.stringify(dep)} is not enabled (its profiles ${target.profiles.map((p) => JSON.stringify(p)).join(', ')} are not active)`;
  // Compose treats a disabled service as undefined; an optional dependency on it is dropped.
  if (required) throw new ComposeError(`service ${JSON.stringify(name)} depends on undefined service ${JSON.stringify(dep)}: ${why}`, { pos, path: where });
  ctx.warnings.add(pos, where, `optional dependency skipped: ${why}`);
  return false;
}

/** Fills networks/networkMode; returns whether the service joins the default network. */
function networking(name: string, service: MapNode, at: KeyPath, spec: ContainerSpec, deps: Dependency[], ctx: ProjectContext): boolean {
  const modeNode = get(service, 'network_mode');
  const netsNode = get(service, 'networks');
  if (has(modeNode)) {
    if (has(netsNode)) fail(netsNode, [...at, 'networks'], `service ${JSON.stringify(name)} declares mutually exclusive network_mode and networks`);
    return networkMode(name, modeNode, [...at, 'network_mode'], spec, deps, ctx);
  }
  if (!has(netsNode)) {
    spec.networks = [{ name: ctx.defaultNetwork.objectName }];
    return true;
  }
  const here = [...at, 'networks'];
  if (netsNode.kind === 'seq') netsNode.items.forEach((item, i) => readString(item, [...here, i]));
  let usesDefault = false;
  spec.networks = [...asMap(netsNode, here).entries.values()].map((entry) => {
    const decl = entry.key === 'default' ? ctx.defaultNetwork : ctx.networks.get(entry.key);
    if (!decl) fail(entry.value, [...here, entry.key], `service ${JSON.stringify(name)} refers to undefined network ${JSON.stringify(entry.key)}: declare it under the top-level networks key`);
    if (decl === ctx.defaultNetwork) usesDefault = true;
    return attachment(decl.objectName, entry.value, [...here, entry.key]);
  });
  return usesDefault;
}

function attachment(objectName: string, node: Node, at: KeyPath): NetworkAttachment {
  const out: NetworkAttachment = { name: objectName };
  if (isNull(node)) return out;
  const map = asMap(node, at);
  const aliases = get(map, 'aliases');
  if (has(aliases)) out.aliases = readStringList(aliases, [...at, 'aliases']);
  const ip = get(map, 'ipv4_address');
  if (has(ip)) {
    const address = readString(ip, [...at, 'ipv4_address']);
    if (!isIPv4(address)) fail(ip, [...at, 'ipv4_address'], `invalid IPv4 address ${JSON.stringify(address)}`);
    out.ipv4Address = address;
  }
  return out;
}

function networkMode(name: string, node: Node, at: KeyPath, spec: ContainerSpec, deps: Dependency[], ctx: ProjectContext): boolean {
  const mode = readString(node, at);
  if (mode === 'host' || mode === 'none') {
    spec.networkMode = mode;
    return false;
  }
  if (mode === 'bridge') {
    // Docker's "bridge" is its docker0 network, which d2p does not have.
    ctx.warnings.add(node.pos, at, `network_mode "bridge" (Docker's default bridge network) is not supported by d2p; the service joins ${ctx.defaultNetwork.objectName}`);
    spec.networks = [{ name: ctx.defaultNetwork.objectName }];
    return true;
  }
  const m = /^(service|container):(.+)$/.exec(mode);
  if (!m) fail(node, at, `invalid network_mode ${JSON.stringify(mode)} (expected host, none, bridge, service:NAME or container:NAME)`);
  if (m[1] === 'service') {
    // Sharing another service's network namespace needs it running first: Compose adds the dependency.
    if (!deps.some((d) => d.name === m[2]) && checkDependency(name, m[2], true, node.pos, at, ctx)) {
      deps.push({ name: m[2], condition: 'service_started' });
    }
  }
  spec.networkMode = mode;
  return false;
}

// ---------------------------------------------------------------------- resources, health, restart

/** One value set in two places (e.g. mem_limit and deploy.resources.limits.memory) must agree. */
function eitherOf<T>(a: Node | undefined, aPath: KeyPath, b: Node | undefined, bPath: KeyPath, read: (n: Node, p: KeyPath) => T): T | undefined {
  const va = has(a) ? read(a, aPath) : undefined;
  const vb = has(b) ? read(b, bPath) : undefined;
  if (va !== undefined && vb !== undefined && va !== vb) {
    fail(b as Node, bPath, `conflicts with ${aPath.join('.')} (${String(va)} vs ${String(vb)}); set one of them`);
  }
  return va ?? vb;
}

function resourceLimits(service: MapNode, at: KeyPath): Resources {
  const deployPath = [...at, 'deploy', 'resources'];
  const resources = get(get(service, 'deploy'), 'resources');
  const limits = get(resources, 'limits');
  const reservations = get(resources, 'reservations');
  const out: Resources = {};
  const cpus = eitherOf(get(service, 'cpus'), [...at, 'cpus'], get(limits, 'cpus'), [...deployPath, 'limits', 'cpus'], readNumber);
  if (cpus !== undefined && cpus < 0) fail((get(service, 'cpus') ?? get(limits, 'cpus')) as Node, [...at, 'cpus'], 'cpus must not be negative');
  if (cpus) out.cpus = cpus; // 0 means "no limit" to Docker
  const memory = eitherOf(get(service, 'mem_limit'), [...at, 'mem_limit'], get(limits, 'memory'), [...deployPath, 'limits', 'memory'], readBytes);
  if (memory) out.memory = memory;
  const reservation = eitherOf(get(service, 'mem_reservation'), [...at, 'mem_reservation'], get(reservations, 'memory'), [...deployPath, 'reservations', 'memory'], readBytes);
  if (reservation) out.memoryReservation = reservation;
  const pids = eitherOf(get(service, 'pids_limit'), [...at, 'pids_limit'], get(limits, 'pids'), [...deployPath, 'limits', 'pids'], (n, p) => readInt(n, p, -1));
  if (pids) out.pids = pids; // 0 leaves the default, as Docker's PidsLimit
  const shares = optional(service, 'cpu_shares', at, (n, p) => readInt(n, p, 0));
  if (shares) out.cpuShares = shares;
  return out;
}

function convertHealthcheck(node: Node, at: KeyPath, warnings: WarningSink): Healthcheck | undefined {
  const map = asMap(node, at);
  const disable = has(get(map, 'disable')) && readBool(get(map, 'disable') as Node, [...at, 'disable']);
  const testNode = get(map, 'test');
  const test = has(testNode) ? healthTest(testNode, [...at, 'test']) : undefined;
  if (disable) {
    if (test && test[0] !== 'NONE') fail(testNode as Node, [...at, 'test'], 'healthcheck.test and healthcheck.disable cannot be set together');
    return { test: ['NONE'] };
  }
  if (!test) {
    warnings.add(map.pos, at, 'a healthcheck without test is not supported by d2p (it would keep the image\'s test); it is ignored');
    return undefined;
  }
  const hc: Healthcheck = { test };
  for (const [key, field] of [['interval', 'interval'], ['timeout', 'timeout'], ['start_period', 'startPeriod'], ['start_interval', 'startInterval']] as const) {
    const value = optional(map, key, at, readDuration);
    if (value !== undefined) hc[field] = value;
  }
  const retries = optional(map, 'retries', at, (n, p) => readInt(n, p, 0));
  if (retries !== undefined) hc.retries = retries;
  return hc;
}

/** A string is a shell command (CMD-SHELL); a list starts with NONE, CMD or CMD-SHELL. */
function healthTest(node: Node, at: KeyPath): string[] {
  if (node.kind === 'scalar') {
    const command = readString(node, at);
    if (command.trim() === '') fail(node, at, 'healthcheck test is empty');
    return ['CMD-SHELL', command];
  }
  const words = asSeq(node, at).items.map((item, i) => readText(item, [...at, i]));
  const [kind, ...rest] = words;
  if (kind === 'NONE') return ['NONE'];
  if ((kind === 'CMD' || kind === 'CMD-SHELL') && rest.length > 0) {
    // Docker joins the words of a CMD-SHELL test with spaces (moby daemon/health.go).
    return kind === 'CMD' ? words : ['CMD-SHELL', rest.join(' ')];
  }
  fail(node, at, `healthcheck test must start with "NONE", "CMD" or "CMD-SHELL" followed by a command, got ${JSON.stringify(words)}`);
}

function setRestart(spec: ContainerSpec, service: MapNode, at: KeyPath): void {
  const node = get(service, 'restart');
  if (!has(node)) return;
  const here = [...at, 'restart'];
  // An unquoted `no` is the string "no" in YAML 1.2, but false to YAML 1.1 tools: accept both.
  const value = node.kind === 'scalar' && node.value === false ? 'no' : readString(node, here);
  const m = /^(no|always|unless-stopped|on-failure)(?::(\d+))?$/.exec(value);
  if (!m || (m[2] !== undefined && m[1] !== 'on-failure')) fail(node, here, `invalid restart policy ${JSON.stringify(value)} (expected no, always, on-failure[:max-retries] or unless-stopped)`);
  spec.restartPolicy = m[1] as RestartPolicy;
  if (m[2] !== undefined) spec.maxRetries = Number(m[2]);
}

function replicaCount(service: MapNode, at: KeyPath): number {
  const deployReplicas = get(get(service, 'deploy'), 'replicas');
  const value = eitherOf(get(service, 'scale'), [...at, 'scale'], deployReplicas, [...at, 'deploy', 'replicas'], (n, p) => readInt(n, p, 0));
  return value ?? 1;
}

// ---------------------------------------------------------------------- flags and lists

const ULIMITS: readonly UlimitName[] = ['core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss', 'rtprio', 'rttime', 'sigpending', 'stack'];

function setFlagsAndLists(spec: ContainerSpec, service: MapNode, at: KeyPath): void {
  for (const [key, field] of [['read_only', 'readOnlyRootfs'], ['init', 'init'], ['privileged', 'privileged'], ['tty', 'tty'], ['stdin_open', 'stdinOpen']] as const) {
    if (optional(service, key, at, readBool)) spec[field] = true;
  }
  for (const [key, field] of [['cap_add', 'capAdd'], ['cap_drop', 'capDrop'], ['dns', 'dns']] as const) {
    const list = optional(service, key, at, readStringList);
    if (list && list.length > 0) spec[field] = list;
  }
  const hosts = optional(service, 'extra_hosts', at, extraHosts);
  if (hosts && hosts.length > 0) spec.extraHosts = hosts;
  const ulimits = optional(service, 'ulimits', at, convertUlimits);
  if (ulimits && ulimits.length > 0) spec.ulimits = ulimits;
  const sysctls = optional(service, 'sysctls', at, convertSysctls);
  if (sysctls && Object.keys(sysctls).length > 0) spec.sysctls = sysctls;
  const shm = optional(service, 'shm_size', at, readBytes);
  if (shm !== undefined) spec.shmSize = shm;
  const logging = optional(service, 'logging', at, convertLogging);
  if (logging) spec.logging = logging;
}

/** "host:ip" or "host=ip" (Compose 2.24+); an IPv6 address may be bracketed. */
function extraHosts(node: Node, at: KeyPath): ExtraHost[] {
  return asSeq(node, at).items.map((item, i) => {
    const text = readText(item, [...at, i]);
    const eq = text.indexOf('=');
    const sep = eq >= 0 ? eq : text.indexOf(':');
    const hostname = sep < 0 ? '' : text.slice(0, sep);
    let ip = sep < 0 ? '' : text.slice(sep + 1);
    if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
    if (hostname === '' || ip === '') fail(item, [...at, i], `invalid extra host ${JSON.stringify(text)} (expected "host:ip" or "host=ip")`);
    return { hostname, ip };
  });
}

function convertUlimits(node: Node, at: KeyPath): Ulimit[] {
  return [...asMap(node, at).entries.values()].map((entry) => {
    const here = [...at, entry.key];
    if (!(ULIMITS as readonly string[]).includes(entry.key)) fail(entry.value, here, `unknown ulimit ${JSON.stringify(entry.key)} (expected one of ${ULIMITS.join(', ')})`);
    if (entry.value.kind !== 'map') {
      const value = readInt(entry.value, here, -1);
      return { name: entry.key as UlimitName, soft: value, hard: value };
    }
    const soft = get(entry.value, 'soft');
    const hard = get(entry.value, 'hard');
    if (!has(soft) || !has(hard)) fail(entry.value, here, 'both soft and hard are required');
    const limit = { name: entry.key as UlimitName, soft: readInt(soft, [...here, 'soft'], -1), hard: readInt(hard, [...here, 'hard'], -1) };
    if (limit.hard !== -1 && (limit.soft === -1 || limit.soft > limit.hard)) fail(entry.value, here, `soft limit ${limit.soft} is above the hard limit ${limit.hard}`);
    return limit;
  });
}

function convertSysctls(node: Node, at: KeyPath): Record<string, string> {
  const out: Record<string, string> = {};
  asKeyValueList(node, at).items.forEach((item, i) => {
    const [key, value] = splitKeyValue(readText(item, [...at, i]));
    if (value === undefined) fail(item, [...at, i], `sysctl ${JSON.stringify(key)} has no value`);
    out[key] = value;
  });
  return out;
}

function convertLogging(node: Node, at: KeyPath): ContainerSpec['logging'] {
  const map = asMap(node, at);
  const out: NonNullable<ContainerSpec['logging']> = {};
  const driver = optional(map, 'driver', at, readString);
  if (driver !== undefined && driver !== '') out.driver = driver;
  const options = get(map, 'options');
  if (has(options)) {
    const opts: Record<string, string> = {};
    for (const e of asMap(options, [...at, 'options']).entries.values()) {
      if (!isNull(e.value)) opts[e.key] = readText(e.value, [...at, 'options', e.key]);
    }
    if (Object.keys(opts).length > 0) out.options = opts;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

