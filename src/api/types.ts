// The TypeScript face of crd-schemas/*.json. Each interface mirrors one schema object
// field for field; when a schema changes, this file changes with it. Fields the schema
// defaults (marked "default: X") are optional here because users may omit them, but
// every object that went through validateObject has them set.
import type { ApiObject, BaseStatus, EventObject } from './meta';

export type { Condition, ObjectMeta, OwnerReference, EventObject } from './meta';

/** Go/Compose duration string: "1m30s", "500ms", "0". Parse with parseDuration. */
export type Duration = string;
/** RFC 3339 timestamp. */
export type Timestamp = string;

export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

// ---------------------------------------------------------------------------- Image

export interface ImageSpec {
  ref: string;
  /** default: IfNotPresent */
  pullPolicy?: PullPolicy;
  /** "os/arch[/variant]" */
  platform?: string;
}

export interface ImageLayer {
  digest: string;
  size?: number;
  diffID?: string;
  mediaType?: string;
}

export interface ImageHealthcheck {
  test?: string[];
  interval?: Duration;
  timeout?: Duration;
  startPeriod?: Duration;
  startInterval?: Duration;
  retries?: number;
}

export interface ImageConfig {
  env?: string[];
  cmd?: string[];
  entrypoint?: string[];
  workingDir?: string;
  user?: string;
  /** "80/tcp" */
  exposedPorts?: string[];
  volumes?: string[];
  labels?: Record<string, string>;
  stopSignal?: string;
  healthcheck?: ImageHealthcheck;
}

export interface ImageStatus extends BaseStatus {
  phase?: 'Pending' | 'Pulling' | 'Ready' | 'Failed';
  digest?: string;
  size?: number;
  layers?: ImageLayer[];
  config?: ImageConfig;
}

export interface Image extends ApiObject<ImageSpec, ImageStatus> {
  kind: 'Image';
}

// ---------------------------------------------------------------------------- Build

export interface BuildSpec {
  context: string;
  dockerfile?: string;
  target?: string;
  args?: Record<string, string>;
  tags?: string[];
  noCache?: boolean;
  platform?: string;
}

export interface BuildStatus extends BaseStatus {
  phase?: 'Pending' | 'Building' | 'Succeeded' | 'Failed';
  imageDigest?: string;
  cacheHits?: number;
  steps?: number;
}

export interface Build extends ApiObject<BuildSpec, BuildStatus> {
  kind: 'Build';
}

// ---------------------------------------------------------------------------- Volume

export interface VolumeSpec {
  /** default: local */
  driver?: 'local';
  driverOpts?: Record<string, string>;
  external?: boolean;
}

export interface VolumeStatus extends BaseStatus {
  phase?: 'Pending' | 'Ready' | 'Failed';
  mountpoint?: string;
}

/** spec may be omitted on input; validation fills it with {} and its defaults. */
export interface Volume extends ApiObject<VolumeSpec, VolumeStatus> {
  kind: 'Volume';
}

// ---------------------------------------------------------------------------- Network

export type NetworkDriver = 'bridge' | 'host' | 'none';

export interface NetworkSpec {
  /** default: bridge */
  driver?: NetworkDriver;
  subnet?: string;
  gateway?: string;
  ipRange?: string;
  internal?: boolean;
  mtu?: number;
  driverOpts?: Record<string, string>;
  external?: boolean;
}

export interface NetworkStatus extends BaseStatus {
  phase?: 'Pending' | 'Ready' | 'Failed';
  /** Linux bridge device name. */
  bridge?: string;
  subnet?: string;
  gateway?: string;
  /** "namespace/container" → IP */
  allocations?: Record<string, string>;
}

/** spec may be omitted on input; validation fills it with {} and its defaults. */
export interface Network extends ApiObject<NetworkSpec, NetworkStatus> {
  kind: 'Network';
}

// ---------------------------------------------------------------------------- ContainerSpec

export interface EnvVar {
  name: string;
  value: string;
}

export type MountType = 'volume' | 'bind' | 'tmpfs';
export type MountPropagation = 'private' | 'rprivate' | 'shared' | 'rshared' | 'slave' | 'rslave';

export interface Mount {
  type: MountType;
  /** volume: Volume object name (absent = anonymous volume); bind: absolute host path (required); tmpfs: not allowed. */
  source?: string;
  /** Absolute path in the container. */
  target: string;
  readOnly?: boolean;
  /** Only with type volume. */
  volume?: { nocopy?: boolean };
  /** Only with type bind. */
  bind?: { propagation?: MountPropagation; createHostPath?: boolean };
  /** Only with type tmpfs. size in bytes; mode as a number (0o1777). */
  tmpfs?: { size?: number; mode?: number };
}

export interface PortMapping {
  containerPort: number;
  /** Absent: not published on the host (or published on a random port, as Compose "80"). */
  hostPort?: number;
  hostIP?: string;
  /** default: tcp */
  protocol?: 'tcp' | 'udp';
}

export interface NetworkAttachment {
  /** Network object name. */
  name: string;
  aliases?: string[];
  ipv4Address?: string;
}

/** "bridge" | "host" | "none" | "container:NAME" | "service:NAME" */
export type NetworkMode = string;

export interface Resources {
  cpus?: number;
  /** Bytes. */
  memory?: number;
  /** Bytes. */
  memoryReservation?: number;
  /** -1 = unlimited. */
  pids?: number;
  cpuShares?: number;
}

export interface Healthcheck {
  /** ["CMD", arg...] | ["CMD-SHELL", command] | ["NONE"] */
  test: string[];
  interval?: Duration;
  timeout?: Duration;
  retries?: number;
  startPeriod?: Duration;
  startInterval?: Duration;
  disable?: boolean;
}

export type RestartPolicy = 'no' | 'always' | 'on-failure' | 'unless-stopped';

export interface ExtraHost {
  hostname: string;
  /** An IP address or "host-gateway". */
  ip: string;
}

export type UlimitName =
  | 'core' | 'cpu' | 'data' | 'fsize' | 'locks' | 'memlock' | 'msgqueue' | 'nice'
  | 'nofile' | 'nproc' | 'rss' | 'rtprio' | 'rttime' | 'sigpending' | 'stack';

export interface Ulimit {
  name: UlimitName;
  /** -1 = unlimited. */
  soft: number;
  /** -1 = unlimited. */
  hard: number;
}

export interface Logging {
  driver?: string;
  options?: Record<string, string>;
}

export type DependencyCondition = 'service_started' | 'service_healthy' | 'service_completed_successfully';

export interface Dependency {
  name: string;
  /** default: service_started */
  condition?: DependencyCondition;
  /** Absent means true (Compose specification). */
  required?: boolean;
  /** Absent means false (Compose specification). */
  restart?: boolean;
}

export interface ContainerSpec {
  image: string;
  imagePullPolicy?: PullPolicy;
  /** Overrides the image's; [] clears it. */
  entrypoint?: string[];
  command?: string[];
  /** In order; a later entry wins. */
  env?: EnvVar[];
  workingDir?: string;
  user?: string;
  hostname?: string;
  domainname?: string;
  mounts?: Mount[];
  ports?: PortMapping[];
  networks?: NetworkAttachment[];
  /** default: bridge */
  networkMode?: NetworkMode;
  resources?: Resources;
  healthcheck?: Healthcheck;
  /** default: no */
  restartPolicy?: RestartPolicy;
  maxRetries?: number;
  /** docker run --rm: deleted once its process has exited for good; restartPolicy "no" only. */
  autoRemove?: boolean;
  stopSignal?: string;
  stopGracePeriod?: Duration;
  capAdd?: string[];
  capDrop?: string[];
  readOnlyRootfs?: boolean;
  init?: boolean;
  privileged?: boolean;
  tty?: boolean;
  stdinOpen?: boolean;
  extraHosts?: ExtraHost[];
  dns?: string[];
  ulimits?: Ulimit[];
  sysctls?: Record<string, string>;
  /** Bytes. */
  shmSize?: number;
  logging?: Logging;
  dependsOn?: Dependency[];
}

// ---------------------------------------------------------------------------- Container

export type ContainerPhase = 'Pending' | 'Creating' | 'Running' | 'Paused' | 'Exited' | 'Failed' | 'CrashLoopBackOff';
export type HealthState = 'starting' | 'healthy' | 'unhealthy';

export interface ContainerStatus extends BaseStatus {
  phase?: ContainerPhase;
  pid?: number;
  /** Network object name → IP */
  ipAddresses?: Record<string, string>;
  /** Ports as published on the host: the real hostPort, also for a random one. */
  ports?: PublishedPort[];
  startedAt?: Timestamp;
  finishedAt?: Timestamp;
  exitCode?: number;
  /** The process as created: entrypoint then command, resolved against the image (docker inspect's Path + Args). */
  command?: string[];
  oomKilled?: boolean;
  restartCount?: number;
  health?: HealthState;
  message?: string;
}

export interface PublishedPort {
  containerPort: number;
  hostPort: number;
  hostIP: string;
  protocol: 'tcp' | 'udp';
}

export interface Container extends ApiObject<ContainerSpec, ContainerStatus> {
  kind: 'Container';
}

// ---------------------------------------------------------------------------- Service

export interface ContainerTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: ContainerSpec;
}

export interface ServiceSpec {
  /** default: 1 */
  replicas?: number;
  template: ContainerTemplate;
  /** Names are Service names. */
  dependsOn?: Dependency[];
}

export interface ServiceStatus extends BaseStatus {
  replicas?: number;
  readyReplicas?: number;
  updatedReplicas?: number;
  templateHash?: string;
}

export interface Service extends ApiObject<ServiceSpec, ServiceStatus> {
  kind: 'Service';
}

// ---------------------------------------------------------------------------- kinds

export interface KindMap {
  Image: Image;
  Build: Build;
  Volume: Volume;
  Network: Network;
  Container: Container;
  Service: Service;
  Event: EventObject;
  Source: Source;
}

export type KindName = keyof KindMap;

export type SpecOf<K extends KindName> = NonNullable<KindMap[K]['spec']>;
export type StatusOf<K extends KindName> = NonNullable<KindMap[K]['status']>;

/** Labels Docker Compose puts on what it creates; d2p sets the same on generated objects. */
export const COMPOSE_LABELS = {
  project: 'com.docker.compose.project',
  service: 'com.docker.compose.service',
  network: 'com.docker.compose.network',
  volume: 'com.docker.compose.volume',
  containerNumber: 'com.docker.compose.container-number',
} as const;

// ---------------------------------------------------------------------------- Source

/** A watched manifest directory (GitOps): see crd-schemas/source.json. */
export interface SourceSpec {
  /** Absolute path. */
  path: string;
  /** default: true */
  prune?: boolean;
  /** default: 30s */
  interval?: Duration;
}

export interface SourceFileStatus {
  /** Relative to spec.path. */
  path: string;
  objects: number;
  error?: string;
}

export interface SourceStatus extends BaseStatus {
  phase?: 'Pending' | 'Synced' | 'Degraded' | 'Failed';
  /** "sha256:<hex>" of the file set. */
  lastAppliedRevision?: string;
  gitCommit?: string;
  lastSyncTime?: Timestamp;
  files?: SourceFileStatus[];
}

export interface Source extends ApiObject<SourceSpec, SourceStatus> {
  kind: 'Source';
}
