// The three files Docker writes for every container and bind-mounts over the image's:
// /etc/hosts, /etc/resolv.conf and /etc/hostname (moby daemon/container_operations.go,
// libnetwork/etchosts and libnetwork/resolvconf). Rendering only: the caller decides
// where they live and how they are mounted.
import { isIP } from 'node:net';

import { NetworkError } from './errors';

// ---------------------------------------------------------------------------- /etc/hosts

export interface HostsEntry {
  hostname: string;
  /** An IP address, or "host-gateway" (replaced by HostsFileInput.hostGatewayIP, as Docker does). */
  ip: string;
}

export interface HostsFileInput {
  /** The container's hostname (spec.hostname, else its name as Compose sets it). */
  hostname: string;
  /** spec.domainname: the first name on the own line becomes hostname.domainname. */
  domainname?: string;
  /** The container's name, written on its own line too when it differs from the hostname. */
  containerName?: string;
  /** Network aliases of the container, written beside its hostname. */
  aliases?: string[];
  /** The container's own addresses, one line each; none for network_mode none/host. */
  addresses: string[];
  /** extra_hosts, in order. */
  extraHosts?: HostsEntry[];
  /** What "host-gateway" in extra_hosts stands for (the gateway of the container's first network). */
  hostGatewayIP?: string;
}

/** Docker's fixed head of /etc/hosts (libnetwork/etchosts.defaultContent); the runtime's own hosts file starts with it too. */
export const LOCALHOST_LINES: readonly string[] = [
  '127.0.0.1\tlocalhost',
  '::1\tlocalhost ip6-localhost ip6-loopback',
  'fe00::0\tip6-localnet',
  'ff00::0\tip6-mcastprefix',
  'ff02::1\tip6-allnodes',
  'ff02::2\tip6-allrouters',
];

/** Renders /etc/hosts: localhost lines, extra_hosts, then the container's own line(s), as Docker orders them. */
export function renderHostsFile(input: HostsFileInput): string {
  const lines = [...LOCALHOST_LINES];
  for (const [index, entry] of (input.extraHosts ?? []).entries()) lines.push(`${resolveExtraHostIP(entry, index, input.hostGatewayIP)}\t${entry.hostname}`);
  const ownNames = ownHostNames(input);
  for (const address of input.addresses) {
    if (isIP(address) === 0) throw new NetworkError('D2P_NETWORK_INVALID', `/etc/hosts of ${input.hostname}: invalid own address ${JSON.stringify(address)}`, { address });
    lines.push(`${address}\t${ownNames.join(' ')}`);
  }
  return lines.join('\n') + '\n';
}

function ownHostNames(input: HostsFileInput): string[] {
  const names: string[] = [];
  if (input.domainname) names.push(`${input.hostname}.${input.domainname}`);
  names.push(input.hostname, ...(input.containerName ? [input.containerName] : []), ...(input.aliases ?? []));
  return [...new Set(names)];
}

function resolveExtraHostIP(entry: HostsEntry, index: number, hostGatewayIP: string | undefined): string {
  const field = `extraHosts[${index}] (${entry.hostname})`;
  if (entry.ip === 'host-gateway') {
    if (hostGatewayIP === undefined) throw new NetworkError('D2P_NETWORK_INVALID', `${field}: "host-gateway" needs a host gateway address, and this container has no network to take one from`);
    return hostGatewayIP;
  }
  if (isIP(entry.ip) === 0) throw new NetworkError('D2P_NETWORK_INVALID', `${field}: invalid IP address ${JSON.stringify(entry.ip)}`, { address: entry.ip });
  if (!/^[A-Za-z0-9_.-]+$/.test(entry.hostname)) throw new NetworkError('D2P_NETWORK_INVALID', `${field}: invalid host name`);
  return entry.ip;
}

// ---------------------------------------------------------------------------- /etc/resolv.conf

export interface ResolvConf {
  nameservers: string[];
  search: string[];
  options: string[];
}

/**
 * Parses resolv.conf(5): `nameserver`, `search` (and the older `domain`, which the last
 * of the two wins, as glibc does) and `options`; comments start with # or ;.
 */
export function parseResolvConf(text: string): ResolvConf {
  const conf: ResolvConf = { nameservers: [], search: [], options: [] };
  for (const rawLine of text.split('\n')) {
    const [keyword, ...values] = rawLine.replace(/[#;].*$/, '').trim().split(/\s+/);
    if (keyword === 'nameserver' && values[0]) conf.nameservers.push(values[0]);
    else if (keyword === 'search' || keyword === 'domain') conf.search = values.filter((v) => v !== '');
    else if (keyword === 'options') conf.options.push(...values.filter((v) => v !== ''));
  }
  return conf;
}

/**
 * Renders a container's resolv.conf. For a container on a d2p network the nameserver is
 * the embedded DNS server; Docker then adds `options ndots:0` so that single-label names
 * (service names) are asked as they are before the search list is tried.
 */
export function renderResolvConf(conf: ResolvConf): string {
  if (conf.nameservers.length === 0) throw new NetworkError('D2P_NETWORK_INVALID', 'resolv.conf: at least one nameserver is needed');
  for (const nameserver of conf.nameservers) {
    if (isIP(nameserver) === 0) throw new NetworkError('D2P_NETWORK_INVALID', `resolv.conf: invalid nameserver ${JSON.stringify(nameserver)}`, { address: nameserver });
  }
  const lines = conf.nameservers.map((ns) => `nameserver ${ns}`);
  if (conf.search.length > 0) lines.push(`search ${conf.search.join(' ')}`);
  if (conf.options.length > 0) lines.push(`options ${conf.options.join(' ')}`);
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------- /etc/hostname

/** RFC 1123 host name: labels of letters, digits and hyphens, 63 bytes each, 253 in all. */
export function renderHostnameFile(hostname: string): string {
  const label = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
  if (hostname.length > 253 || !hostname.split('.').every((part) => label.test(part))) {
    throw new NetworkError('D2P_NETWORK_INVALID', `invalid hostname ${JSON.stringify(hostname)}: expected RFC 1123 labels (letters, digits, hyphens)`);
  }
  return `${hostname}\n`;
}
