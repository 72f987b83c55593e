// Which keys the compose-spec allows (schema/compose-spec.json of compose-spec/compose-spec)
// and which of them d2p honours. A key outside the spec is an error, as `docker compose
// config` reports ("additional property ... not allowed"); a key in the spec that d2p does
// not implement is a warning naming it — never a silent drop. `x-` keys are extensions
// and always allowed.
import { ComposeError, type KeyPath, type WarningSink } from './errors';
import type { Node } from './node';

/** yes: converted; no: accepted but not implemented (warned); ignore: documentation only. */
type Support = 'yes' | 'no' | 'ignore';

export interface Field {
  support: Support;
  shape?: Shape;
  note?: string;
}

export interface Shape {
  /** The keys a mapping may have. */
  keys?: Record<string, Field>;
  /** Mappings with free keys (services, depends_on): the shape of every value. */
  values?: Shape;
  /** Free keys must match this (compose-spec names: ^[a-zA-Z0-9._-]+$). */
  keyPattern?: RegExp;
  /** The shape of mapping items in a list (long-syntax ports, volumes...). */
  items?: Shape;
}

const yes = (shape?: Shape): Field => ({ support: 'yes', shape });
const no = (note?: string): Field => ({ support: 'no', note });
const ignore: Field = { support: 'ignore' };

function unsupported(...names: string[]): Record<string, Field> {
  return Object.fromEntries(names.map((n) => [n, no()]));
}

const NAME_PATTERN = /^[a-zA-Z0-9._-]+$/;

const buildShape: Shape = {
  keys: {
    context: yes(),
    dockerfile: yes(),
    args: yes(),
    target: yes(),
    tags: yes(),
    no_cache: yes(),
    ...unsupported(
      'dockerfile_inline', 'entitlements', 'ssh', 'labels', 'cache_from', 'cache_to', 'additional_contexts',
      'network', 'pull', 'shm_size', 'extra_hosts', 'isolation', 'privileged', 'secrets', 'ulimits', 'platforms',
    ),
  },
};

const healthcheckShape: Shape = {
  keys: {
    disable: yes(), interval: yes(), retries: yes(), test: yes(), timeout: yes(), start_period: yes(), start_interval: yes(),
  },
};

const deployShape: Shape = {
  keys: {
    replicas: yes(),
    resources: yes({
      keys: {
        limits: yes({ keys: { cpus: yes(), memory: yes(), pids: yes() } }),
        reservations: yes({
          keys: { memory: yes(), ...unsupported('cpus', 'generic_resources', 'devices') },
        }),
      },
    }),
    ...unsupported('mode', 'endpoint_mode', 'labels', 'rollback_config', 'update_config', 'restart_policy', 'placement'),
  },
};

const portShape: Shape = {
  keys: { target: yes(), published: yes(), host_ip: yes(), protocol: yes(), mode: yes(), ...unsupported('name', 'app_protocol') },
};

const volumeMountShape: Shape = {
  keys: {
    type: yes(),
    source: yes(),
    target: yes(),
    read_only: yes(),
    consistency: no('it only matters to Docker Desktop file sharing'),
    bind: yes({ keys: { propagation: yes(), create_host_path: yes(), ...unsupported('recursive', 'selinux') } }),
    volume: yes({ keys: { nocopy: yes(), ...unsupported('labels', 'subpath') } }),
    tmpfs: yes({ keys: { size: yes(), mode: yes() } }),
    image: no(),
  },
};

const fileReferenceShape: Shape = {
  keys: { source: yes(), target: yes(), ...unsupported('uid', 'gid', 'mode') },
};

export const serviceShape: Shape = {
  keys: {
    image: yes(),
    build: yes(buildShape),
    command: yes(),
    entrypoint: yes(),
    environment: yes(),
    env_file: yes({ items: { keys: { path: yes(), required: yes(), format: yes() } } }), // format: warned by the converter
    working_dir: yes(),
    user: yes(),
    hostname: yes(),
    domainname: yes(),
    container_name: yes(),
    labels: yes(),
    ports: yes({ items: portShape }),
    expose: ignore,
    volumes: yes({ items: volumeMountShape }),
    tmpfs: yes(),
    networks: yes({
      values: {
        keys: {
          aliases: yes(),
          ipv4_address: yes(),
          ...unsupported('interface_name', 'ipv6_address', 'link_local_ips', 'mac_address', 'driver_opts', 'priority', 'gw_priority'),
        },
      },
    }),
    network_mode: yes(),
    depends_on: yes({ values: { keys: { condition: yes(), required: yes(), restart: yes() } } }),
    healthcheck: yes(healthcheckShape),
    restart: yes(),
    deploy: yes(deployShape),
    scale: yes(),
    mem_limit: yes(),
    mem_reservation: yes(),
    cpus: yes(),
    pids_limit: yes(),
    cpu_shares: yes(),
    stop_signal: yes(),
    stop_grace_period: yes(),
    cap_add: yes(),
    cap_drop: yes(),
    read_only: yes(),
    init: yes(),
    privileged: yes(),
    tty: yes(),
    stdin_open: yes(),
    extra_hosts: yes(),
    dns: yes(),
    ulimits: yes({ values: { keys: { soft: yes(), hard: yes() } } }),
    sysctls: yes(),
    shm_size: yes(),
    logging: yes({ keys: { driver: yes(), options: yes() } }),
    profiles: yes(),
    extends: yes({ keys: { service: yes(), file: yes() } }),
    configs: yes({ items: fileReferenceShape }),
    secrets: yes({ items: fileReferenceShape }),
    pull_policy: yes(),
    links: no('services reach each other by service name on shared networks'),
    ...unsupported(
      'develop', 'annotations', 'attach', 'blkio_config', 'cgroup', 'cgroup_parent', 'cpu_count', 'cpu_percent',
      'cpu_quota', 'cpu_period', 'cpu_rt_period', 'cpu_rt_runtime', 'cpuset', 'credential_spec', 'device_cgroup_rules',
      'devices', 'dns_opt', 'dns_search', 'label_file', 'provider', 'external_links', 'gpus', 'group_add', 'ipc',
      'isolation', 'mac_address', 'mem_swappiness', 'memswap_limit', 'models', 'oom_kill_disable', 'oom_score_adj',
      'pid', 'platform', 'post_start', 'pre_stop', 'pull_refresh_after', 'runtime', 'security_opt', 'storage_opt',
      'use_api_socket', 'uts', 'userns_mode', 'volumes_from',
    ),
  },
};

const networkShape: Shape = {
  keys: {
    name: yes(),
    driver: yes(),
    driver_opts: yes(),
    ipam: yes({
      keys: {
        driver: yes(),
        config: yes({ items: { keys: { subnet: yes(), ip_range: yes(), gateway: yes(), aux_addresses: no() } } }),
        options: no(),
      },
    }),
    external: yes({ keys: { name: yes() } }),
    internal: yes(),
    labels: yes(),
    ...unsupported('enable_ipv4', 'enable_ipv6', 'attachable'),
  },
};

const volumeShape: Shape = {
  keys: { name: yes(), driver: yes(), driver_opts: yes(), external: yes({ keys: { name: yes() } }), labels: yes() },
};

const secretShape: Shape = {
  keys: {
    name: yes(),
    file: yes(),
    environment: no('only file-based secrets are mounted'),
    external: no('external secrets need a Swarm secret store'),
    ...unsupported('labels', 'driver', 'driver_opts', 'template_driver'),
  },
};

const configShape: Shape = {
  keys: {
    name: yes(),
    file: yes(),
    content: no('only file-based configs are mounted'),
    environment: no('only file-based configs are mounted'),
    external: no('external configs need a Swarm config store'),
    ...unsupported('labels', 'template_driver'),
  },
};

export const topLevelShape: Shape = {
  keys: {
    version: ignore, // obsolete: the loader warns as Compose does
    name: yes(),
    services: yes({ values: serviceShape, keyPattern: NAME_PATTERN }),
    networks: yes({ values: networkShape, keyPattern: NAME_PATTERN }),
    volumes: yes({ values: volumeShape, keyPattern: NAME_PATTERN }),
    secrets: yes({ values: secretShape, keyPattern: NAME_PATTERN }),
    configs: yes({ values: configShape, keyPattern: NAME_PATTERN }),
    include: no('list the files with -f instead'),
    models: no(),
  },
};

/** Throws on the first key the compose-spec does not allow. */
export function checkKeys(node: Node, shape: Shape, path: KeyPath): void {
  if (node.kind === 'seq' && shape.items) {
    node.items.forEach((item, i) => checkKeys(item, shape.items as Shape, [...path, i]));
    return;
  }
  if (node.kind !== 'map') return;
  for (const entry of node.entries.values()) {
    const at = [...path, entry.key];
    if (shape.values) {
      if (shape.keyPattern && !shape.keyPattern.test(entry.key)) {
        throw new ComposeError(`invalid name ${JSON.stringify(entry.key)} (allowed: letters, digits, ".", "_", "-")`, { pos: entry.keyPos, path });
      }
      checkKeys(entry.value, shape.values, at);
      continue;
    }
    if (!shape.keys || entry.key.startsWith('x-')) continue;
    const field = shape.keys[entry.key];
    if (!field) {
      const hint = closest(entry.key, Object.keys(shape.keys));
      throw new ComposeError(
        `additional property ${JSON.stringify(entry.key)} is not allowed${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}`,
        { pos: entry.keyPos, path },
      );
    }
    if (field.shape) checkKeys(entry.value, field.shape, at);
  }
}

/** Warns for every key that is set (not null/false/empty) but not implemented by d2p. */
export function warnUnsupported(node: Node, shape: Shape, path: KeyPath, warnings: WarningSink): void {
  if (node.kind === 'seq' && shape.items) {
    node.items.forEach((item, i) => warnUnsupported(item, shape.items as Shape, [...path, i], warnings));
    return;
  }
  if (node.kind !== 'map') return;
  for (const entry of node.entries.values()) {
    const at = [...path, entry.key];
    const field = shape.values ? { support: 'yes' as const, shape: shape.values } : shape.keys?.[entry.key];
    if (!field || entry.key.startsWith('x-') || isUnset(entry.value)) continue;
    if (field.support === 'no') {
      const note = field.note ? ` (${field.note})` : '';
      warnings.add(entry.keyPos, at, `${JSON.stringify(entry.key)} is not supported by d2p and is ignored${note}`);
    } else if (field.support === 'yes' && field.shape) {
      warnUnsupported(entry.value, field.shape, at, warnings);
    }
  }
}

function isUnset(node: Node): boolean {
  if (node.kind === 'scalar') return node.value === null || node.value === false || node.value === '';
  if (node.kind === 'seq') return node.items.length === 0;
  return node.entries.size === 0;
}

/** The allowed key nearest to a typo, if it is near enough to be what the user meant. */
function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  // Two edits catch swapped letters ("imgae") without suggesting unrelated short keys.
  return bestDistance <= (word.length >= 4 ? 2 : 1) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}
