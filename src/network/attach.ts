// Container network attachment (DESIGN.md §6, issue 6): what Docker's libnetwork sandbox
// and bridge driver do for one container, in d2p's terms.
//  - A container on bridge networks gets a named network namespace: a bind mount of a new
//    net namespace onto <paths.containers>/<id>/netns (ip-netns(8)'s trick), which the
//    runtime joins (ContainerConfig.netnsPath), and which outlives restarts of the process.
//  - One veth pair per network: the host end `veth<hash>` is enslaved to the network's
//    bridge, the peer is created directly inside the namespace as eth0, eth1… (in
//    spec.networks order); its address comes from the network's AddressAllocator
//    (ipv4Address honoured); the default route goes through the gateway of the first
//    non-internal network (internal networks give none, as Docker's --internal).
//  - network_mode host: no namespace (the runtime shares the host's); none: a namespace
//    with only lo; container:NAME / service:NAME: the other container's namespace.
//  - Names: container name, service name, aliases and hostname are registered in the
//    embedded DNS server per network; the server listens on every bridge's gateway, and
//    resolv.conf points at the first network's gateway, so a container asks a server it can
//    reach through its own eth0 and sees only the names of its own networks.
//  - Published ports: hostIP:hostPort → the address on the first network (port-forward.ts).
//
// One Networking instance per state root lives in the daemon: the Network controller
// registers Ready networks in it, the Container controller attaches and detaches through it.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { DEFAULT_NAMESPACE } from '../api/meta';
import { COMPOSE_LABELS, type ContainerSpec, type NetworkAttachment, type PortMapping } from '../api/types';
import type { Paths } from '../config';
import { writeFileAtomic } from '../runtime/bundle';
import { DnsServer, type DnsRecord, type ListenAddress } from './dns';
import { NetworkError, errnoOf } from './errors';
import { parseResolvConf, renderHostsFile, renderResolvConf } from './hosts-files';
import { AddressAllocator, parseCidr } from './ipam';
import { realNetHost, type NetHost } from './netns';
import { findIptables } from './iptables';
import { IptablesNat } from './nat';
import { PortPublisher, type PortNat, type PublishedPort } from './port-forward';

// ---------------------------------------------------------------------------- names

/** IFNAMSIZ is 16 with the NUL (include/uapi/linux/if.h): 15 usable bytes. */
const IFNAME_MAX = 15;
/** How long a removed namespace's veths may take to go with it (the kernel's cleanup_net), and how often to look. */
const VETH_TEARDOWN_WAIT_MS = 2_000;
const VETH_TEARDOWN_POLL_MS = 5;

function shortHash(text: string, length: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

/** `d2p-<hash of namespace/name>`: stable across restarts, so an existing bridge is adopted. */
export function bridgeName(namespace: string, name: string): string {
  return `d2p-${shortHash(`${namespace}/${name}`, IFNAME_MAX - 4)}`;
}

/** Host end of a container's veth on one network: `veth<hash of namespace/container/network>`. */
export function hostVethName(containerKey: string, network: string): string {
  return `veth${shortHash(`${containerKey}\0${network}`, IFNAME_MAX - 4)}`;
}

/** The container's interface on its n-th network, as Docker numbers them. */
export function containerIfName(index: number): string {
  return `eth${index}`;
}

export function netnsPathOf(paths: Paths, containerId: string): string {
  return path.join(paths.containers, containerId, 'netns');
}

// ---------------------------------------------------------------------------- errors

export type AttachErrorCode =
  /** A network the container joins is not Ready yet (or does not exist): wait for it. */
  | 'D2P_NETWORK_NOT_READY'
  /** The container whose namespace this one joins (container:/service:) has none yet. */
  | 'D2P_NETWORK_PEER_NOT_READY'
  /** The spec cannot be attached as written (e.g. networks with network_mode host). */
  | 'D2P_NETWORK_INVALID_ATTACHMENT';

export class AttachError extends Error {
  constructor(
    readonly code: AttachErrorCode,
    message: string,
    readonly container: string,
    readonly network?: string,
  ) {
    super(message);
    this.name = 'AttachError';
  }
}

export function isAttachError(error: unknown, code?: AttachErrorCode): error is AttachError {
  return error instanceof AttachError && (code === undefined || error.code === code);
}

// ---------------------------------------------------------------------------- networks

/** A Ready bridge network, as the Network controller registers it. */
export interface BridgeNetwork {
  namespace: string;
  name: string;
  bridge: string;
  subnet: string;
  gateway: string;
  ipRange?: string;
  internal: boolean;
  mtu?: number;
}

interface RegisteredNetwork extends BridgeNetwork {
  key: string;
  allocator: AddressAllocator;
}

/** What the DNS side of Networking needs: DnsServer's methods (a fake in unit tests). */
export type DnsService = Pick<DnsServer, 'setRecords' | 'deleteNetwork' | 'listen' | 'unlisten' | 'listeners' | 'close'>;

export interface NetworkingOptions {
  paths: Paths;
  host?: NetHost;
  /** Default: a DnsServer answering for Networking's endpoints. */
  dns?: (lookups: DnsLookups) => DnsService;
  /** Port of the embedded DNS server on each gateway; 53 unless a test moves it. */
  dnsPort?: number;
  /** Upstream resolvers for names that are not ours; default: the host's resolv.conf. */
  dnsUpstreams?: string[];
  ports?: PortPublisher;
  /** Kernel NAT beside the userland proxy of each published port (ignored when `ports` is given). */
  nat?: PortNat;
  onError?(error: Error): void;
}

export interface DnsLookups {
  networksOf(clientIP: string): string[];
  forwardFor(clientIP: string): boolean;
}

// ---------------------------------------------------------------------------- attachment

export interface AttachRequest {
  namespace: string;
  /** Container object name. */
  name: string;
  /** Runtime id (containerId(namespace, name)). */
  id: string;
  spec: Pick<ContainerSpec, 'networkMode' | 'networks' | 'hostname' | 'domainname' | 'ports' | 'extraHosts' | 'dns'>;
  labels?: Record<string, string>;
  /** For network_mode container:/service:, the runtime id of the container whose namespace is joined. */
  peerId?: string;
  /**
   * The networks the container's namespace was set up for before (the spec it was last
   * attached with). Those no longer in spec.networks are detached, so a running container
   * changes networks without a new process (`docker network connect|disconnect`), also
   * after a daemon restart, when this process no longer remembers the earlier attach.
   */
  previousNetworks?: NetworkAttachment[];
}

export interface PublishedPortInfo {
  hostIP: string;
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

export interface Attachment {
  /** What the runtime should do: "host" shares ours, anything else joins netnsPath. */
  networkMode: 'host' | 'none' | 'bridge' | 'container';
  netnsPath?: string;
  /** Network object name → the container's address on it. */
  ipAddresses: Record<string, string>;
  /** Written to <paths.containers>/<id>/hosts and resolv.conf (undefined for host and container modes). */
  hostsFile?: string;
  resolvConf?: string;
  ports: PublishedPortInfo[];
}

interface Endpoint {
  network: RegisteredNetwork;
  ip: string;
  names: DnsRecord;
}

interface AttachedContainer {
  key: string;
  endpoints: Endpoint[];
  ports: PublishedPort[];
}

export class Networking {
  readonly paths: Paths;
  readonly host: NetHost;
  readonly dns: DnsService;
  private readonly dnsPort: number;
  private readonly publisher: PortPublisher;
  private readonly networks = new Map<string, RegisteredNetwork>();
  private readonly containers = new Map<string, AttachedContainer>();
  private readonly onError: ((error: Error) => void) | undefined;

  constructor(options: NetworkingOptions) {
    this.paths = options.paths;
    this.onError = options.onError;
    this.host = options.host ?? realNetHost();
    this.dnsPort = options.dnsPort ?? 53;
    this.publisher = options.ports ?? new PortPublisher({ onError: options.onError, nat: options.nat });
    const lookups: DnsLookups = { networksOf: (ip) => this.networksOf(ip), forwardFor: (ip) => this.forwardFor(ip) };
    this.dns = options.dns
      ? options.dns(lookups)
      : new DnsServer({ ...lookups, upstreams: options.dnsUpstreams, onError: options.onError });
  }

  // -------------------------------------------------------------- network side

  /**
   * Registers (or refreshes) a Ready bridge network. `persisted` is the allocation map kept
   * in Network.status: addresses of endpoints this process has not attached yet (after a
   * daemon restart) are reserved again, so nobody else gets them.
   */
  registerNetwork(network: BridgeNetwork, persisted: Record<string, string> = {}): void {
    const key = networkKey(network.namespace, network.name);
    const current = this.networks.get(key);
    if (current && sameAddressing(current, network)) {
      Object.assign(current, network);
      for (const [endpoint, ip] of Object.entries(persisted)) {
        if (current.allocator.lookup(endpoint) === undefined) current.allocator.allocate(endpoint, ip);
      }
      return;
    }
    const allocator = new AddressAllocator({ network: key, subnet: network.subnet, gateway: network.gateway, ipRange: network.ipRange, allocations: persisted });
    this.networks.set(key, { ...network, key, allocator });
  }

  unregisterNetwork(namespace: string, name: string): void {
    const key = networkKey(namespace, name);
    this.networks.delete(key);
    this.dns.deleteNetwork(key);
  }

  network(namespace: string, name: string): BridgeNetwork | undefined {
    return this.networks.get(networkKey(namespace, name));
  }

  /** The allocation map to persist in Network.status.allocations. */
  allocations(namespace: string, name: string): Record<string, string> | undefined {
    return this.networks.get(networkKey(namespace, name))?.allocator.toJSON();
  }

  /** Releases addresses whose endpoint `keep` rejects (a Container gone or no longer on the network). */
  releaseStale(namespace: string, name: string, keep: (endpointKey: string) => boolean): string[] {
    const network = this.networks.get(networkKey(namespace, name));
    if (!network) return [];
    const released = Object.keys(network.allocator.toJSON()).filter((endpoint) => !keep(endpoint) && !this.containers.has(endpoint));
    for (const endpoint of released) network.allocator.release(endpoint);
    return released;
  }

  /** Starts the DNS listener on the network's gateway (the bridge must carry that address). */
  async serveDns(namespace: string, name: string): Promise<ListenAddress> {
    const network = this.requireRegistered(namespace, name);
    const existing = this.dns.listeners().find((l) => l.host === network.gateway && l.port === this.dnsPort);
    if (existing) return existing;
    return this.dns.listen(network.gateway, this.dnsPort);
  }

  async stopDns(gateway: string): Promise<void> {
    await this.dns.unlisten(gateway, this.dnsPort);
  }

  /** Containers attached by this process to the network, as "namespace/name". */
  attachedTo(namespace: string, name: string): string[] {
    const key = networkKey(namespace, name);
    return [...this.containers.values()].filter((c) => c.endpoints.some((e) => e.network.key === key)).map((c) => c.key);
  }

  /** Whether this process attached the container (false after a daemon restart until it attaches again). */
  isAttached(namespace: string, name: string): boolean {
    return this.containers.has(`${namespace}/${name}`);
  }

  /** Network name → address of the container as this process attached it (what status.ipAddresses should say). */
  addressesOf(namespace: string, name: string): Record<string, string> {
    const endpoints = this.containers.get(`${namespace}/${name}`)?.endpoints ?? [];
    return Object.fromEntries(endpoints.map((e) => [e.network.name, e.ip]));
  }

  async close(): Promise<void> {
    await this.publisher.closeAll();
    await this.dns.close();
  }

  // -------------------------------------------------------------- container side

  /**
   * Makes the container's network real, idempotently: a second call with the same request
   * changes nothing and answers the same. Call it after the runtime created the container's
   * directory (runtime.create) and before its process starts — or while it runs, with
   * previousNetworks, to connect and disconnect networks live: networks no longer wanted
   * are detached first, new ones get the lowest free ethN (as Docker numbers a connected
   * network), and hosts/resolv.conf are rewritten in place so the running process sees them.
   */
  async attach(request: AttachRequest): Promise<Attachment> {
    const mode = request.spec.networkMode ?? 'bridge';
    const key = `${request.namespace}/${request.name}`;
    if (mode === 'host') {
      if ((request.spec.networks ?? []).length > 0) {
        throw new AttachError('D2P_NETWORK_INVALID_ATTACHMENT', `container ${key}: spec.networks cannot be used with networkMode host`, key);
      }
      return { networkMode: 'host', ipAddresses: {}, ports: [] };
    }
    if (mode.startsWith('container:') || mode.startsWith('service:')) return this.joinPeer(request, key, mode);
    const netnsPath = netnsPathOf(this.paths, request.id);
    // Before resolving the wanted networks: a disconnect happens even while a network
    // connected in the same change is not ready yet.
    this.dropNetworksNotWanted(request, key, mode === 'none' ? [] : (request.spec.networks ?? []).map((n) => n.name));
    const networks = mode === 'none' ? [] : this.resolveNetworks(request, key);
    // A namespace made now has its loopback up; one kept from before is checked.
    if (!this.host.createNetns(netnsPath)) this.setUpIfDown('lo', netnsPath);
    const claimedNames = new Set<string>();
    const endpoints = networks.map((attachment) => this.attachOne(request, key, netnsPath, attachment, claimedNames));
    this.ensureDefaultRoute(netnsPath, endpoints);
    const previous = this.containers.get(key);
    const attached: AttachedContainer = { key, endpoints, ports: previous?.ports ?? [] };
    this.containers.set(key, attached);
    this.refreshDns(new Set([...endpoints, ...(previous?.endpoints ?? [])].map((e) => e.network.key)));
    attached.ports = await this.portsFor(request, key, endpoints, attached.ports);
    const files = this.renderFiles(request, endpoints);
    this.writeFiles(request.id, files);
    return {
      networkMode: mode === 'none' ? 'none' : 'bridge',
      netnsPath,
      ipAddresses: Object.fromEntries(endpoints.map((e) => [e.network.name, e.ip])),
      ...files,
      ports: attached.ports.map(portInfo),
    };
  }

  /**
   * Undoes attach: published ports closed, veths deleted, DNS names removed, addresses
   * released, the namespace file unmounted and removed. Works from the request alone, so it
   * also cleans up after a daemon restart; call it before the runtime deletes the
   * container's directory.
   */
  async detach(request: Pick<AttachRequest, 'namespace' | 'name' | 'id' | 'spec'>): Promise<void> {
    const key = `${request.namespace}/${request.name}`;
    const attached = this.containers.get(key);
    this.containers.delete(key);
    await Promise.all((attached?.ports ?? []).map((port) => port.close()));
    const touched = new Set<string>();
    const hostEnds = new Set<string>();
    for (const attachment of request.spec.networks ?? []) {
      hostEnds.add(hostVethName(key, attachment.name));
      const network = this.networks.get(networkKey(request.namespace, attachment.name));
      network?.allocator.release(key);
      if (network) touched.add(network.key);
    }
    for (const endpoint of attached?.endpoints ?? []) {
      hostEnds.add(hostVethName(key, endpoint.network.name));
      endpoint.network.allocator.release(key);
      touched.add(endpoint.network.key);
    }
    this.refreshDns(touched);
    const mode = request.spec.networkMode ?? 'bridge';
    if (mode !== 'bridge' && mode !== 'none') {
      for (const name of hostEnds) this.deleteLinkIfPresent(name);
      return;
    }
    // The process is gone, so unmounting the namespace destroys it, and the kernel deletes
    // its veths (peers on the host included) in the background, many namespaces per RCU
    // grace period. Deleting each veth here was ~35 ms of blocked event loop (a `down` of
    // 100: 3.5 s). The veths are awaited all the same: a Container is gone only once they are.
    this.host.removeNetns(netnsPathOf(this.paths, request.id));
    await this.waitForLinksGone(key, [...hostEnds]);
  }

  /** Polls until the host ends are gone; ones something still holds (a namespace kept alive) are deleted. */
  private async waitForLinksGone(key: string, names: string[]): Promise<void> {
    const deadline = Date.now() + VETH_TEARDOWN_WAIT_MS;
    let left = names.filter((name) => this.host.linkExists(name));
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, VETH_TEARDOWN_POLL_MS));
      left = left.filter((name) => this.host.linkExists(name));
    }
    if (left.length > 0) {
      this.onError?.(new NetworkError('D2P_NETWORK_SYSTEM', `container ${key}: veths ${left.join(', ')} outlived its network namespace (${VETH_TEARDOWN_WAIT_MS} ms); deleting them`));
    }
    for (const name of left) this.deleteLinkIfPresent(name);
  }

  // -------------------------------------------------------------- internals

  private joinPeer(request: AttachRequest, key: string, mode: string): Attachment {
    if (request.peerId === undefined) {
      throw new AttachError('D2P_NETWORK_PEER_NOT_READY', `container ${key}: ${mode} has no running container to join yet`, key);
    }
    const netnsPath = netnsPathOf(this.paths, request.peerId);
    if (!this.host.netnsExists(netnsPath)) {
      throw new AttachError('D2P_NETWORK_PEER_NOT_READY', `container ${key}: ${mode} (${request.peerId}) has no network namespace yet at ${netnsPath}`, key);
    }
    return { networkMode: 'container', netnsPath, ipAddresses: {}, ports: [] };
  }

  private resolveNetworks(request: AttachRequest, key: string): Array<{ attachment: NonNullable<ContainerSpec['networks']>[number]; network: RegisteredNetwork }> {
    return (request.spec.networks ?? []).map((attachment) => {
      const network = this.networks.get(networkKey(request.namespace, attachment.name));
      if (!network) {
        throw new AttachError('D2P_NETWORK_NOT_READY', `container ${key}: network ${request.namespace}/${attachment.name} (spec.networks) is not ready`, key, attachment.name);
      }
      return { attachment, network };
    });
  }

  private attachOne(
    request: AttachRequest,
    key: string,
    netnsPath: string,
    { attachment, network }: { attachment: NonNullable<ContainerSpec['networks']>[number]; network: RegisteredNetwork },
    claimedNames: Set<string>,
  ): Endpoint {
    const ip = network.allocator.allocate(key, attachment.ipv4Address);
    const hostEnd = hostVethName(key, network.name);
    const cidr = `${ip}/${parseCidr(network.subnet).prefixLength}`;
    const hostHasEnd = this.host.linkExists(hostEnd);
    // The inside end is known by its address, not by a position in spec.networks: after a
    // live disconnect the remaining interfaces keep their names (eth1 stays eth1).
    const insideWithAddress = this.host.addrList(null, netnsPath).find((a) => a.family === 4 && a.cidr === cidr)?.link;
    let inside: string;
    if (hostHasEnd && insideWithAddress !== undefined && !claimedNames.has(insideWithAddress)) {
      inside = insideWithAddress;
    } else {
      // Half of a pair (a crash between two steps, a namespace made anew, a new address):
      // start over. Deleting either end of a veth deletes its peer too (veth(4)).
      if (hostHasEnd) this.host.deleteLink(hostEnd);
      if (insideWithAddress !== undefined && this.host.linkList(netnsPath).some((l) => l.name === insideWithAddress)) {
        this.host.deleteLink(insideWithAddress, netnsPath);
      }
      inside = this.freeInterfaceName(netnsPath, claimedNames);
      this.host.addVeth(hostEnd, inside, netnsPath, network.mtu);
    }
    claimedNames.add(inside);
    const hostLink = this.host.linkList().find((l) => l.name === hostEnd);
    if (hostLink?.master !== network.bridge) this.host.setMaster(hostEnd, network.bridge);
    if (!hostLink?.up) this.host.setLinkUp(hostEnd);
    const addresses = this.host.addrList(inside, netnsPath).filter((a) => a.family === 4);
    if (!addresses.some((a) => a.cidr === cidr)) this.host.addAddress(inside, cidr, netnsPath);
    this.setUpIfDown(inside, netnsPath);
    return { network, ip, names: dnsRecordOf(request, attachment.aliases ?? [], ip) };
  }

  /** The lowest ethN not in the namespace nor given out in this attach (libnetwork numbers interfaces so too). */
  private freeInterfaceName(netnsPath: string, claimedNames: Set<string>): string {
    const taken = new Set([...this.host.linkList(netnsPath).map((l) => l.name), ...claimedNames]);
    for (let index = 0; ; index++) {
      const name = containerIfName(index);
      if (!taken.has(name)) return name;
    }
  }

  /**
   * Networks the container was on (its previous spec, or what this process attached) and is
   * no longer asked to join: host end of the veth deleted (the end inside goes with it),
   * address released, names gone from that network's DNS. The default route, if it went
   * through a dropped network, vanished with the veth; ensureDefaultRoute adds another.
   */
  private dropNetworksNotWanted(request: AttachRequest, key: string, wanted: string[]): void {
    const previous = this.containers.get(key);
    const before = new Set([...(request.previousNetworks ?? []).map((n) => n.name), ...(previous?.endpoints ?? []).map((e) => e.network.name)]);
    const dropped = [...before].filter((name) => !wanted.includes(name));
    if (dropped.length === 0) return;
    const touched = new Set<string>();
    for (const name of dropped) {
      this.deleteLinkIfPresent(hostVethName(key, name));
      const network = this.networks.get(networkKey(request.namespace, name));
      network?.allocator.release(key);
      if (network) touched.add(network.key);
    }
    if (previous) previous.endpoints = previous.endpoints.filter((e) => !dropped.includes(e.network.name));
    this.refreshDns(touched);
  }

  /**
   * Published ports forward to the address on the first network. They stay as they are
   * while that address does; when a live change gives the container another first network
   * they are published again to it, on the same host ports (so a random port keeps its
   * number); with no network left they are closed, as there is nothing to forward to.
   */
  private async portsFor(request: AttachRequest, key: string, endpoints: Endpoint[], current: PublishedPort[]): Promise<PublishedPort[]> {
    if (current.length === 0) {
      const bridgeWithoutNetworks = (request.spec.networkMode ?? 'bridge') === 'bridge' && endpoints.length === 0;
      return bridgeWithoutNetworks ? [] : this.publishPorts(request, key, endpoints);
    }
    const target = endpoints[0];
    if (target && current.every((p) => p.targetIP === target.ip)) return current;
    await Promise.all(current.map((p) => p.close()));
    if (!target) return [];
    const keepHostPorts = (request.spec.ports ?? []).map((port, index) => ({ ...port, hostPort: port.hostPort ?? current[index]?.hostPort }));
    return this.publishPorts({ ...request, spec: { ...request.spec, ports: keepHostPorts } }, key, endpoints);
  }

  /** Docker's gateway endpoint: the first network that is not internal. */
  private ensureDefaultRoute(netnsPath: string, endpoints: Endpoint[]): void {
    const gatewayEndpoint = endpoints.find((e) => !e.network.internal);
    if (!gatewayEndpoint) return;
    const hasDefault = this.host.routeList(netnsPath).some((r) => r.dst === 'default');
    if (!hasDefault) this.host.addRoute({ dst: 'default', gateway: gatewayEndpoint.network.gateway }, netnsPath);
  }

  private refreshDns(networkKeys: Set<string>): void {
    for (const key of networkKeys) {
      const records: DnsRecord[] = [];
      for (const container of this.containers.values()) {
        for (const endpoint of container.endpoints) if (endpoint.network.key === key) records.push(endpoint.names);
      }
      this.dns.setRecords(key, records);
    }
  }

  private async publishPorts(request: AttachRequest, key: string, endpoints: Endpoint[]): Promise<PublishedPort[]> {
    const ports = request.spec.ports ?? [];
    if (ports.length === 0) return [];
    const target = endpoints[0];
    if (!target) {
      throw new AttachError('D2P_NETWORK_INVALID_ATTACHMENT', `container ${key}: spec.ports needs a bridge network to publish to (networkMode ${request.spec.networkMode ?? 'bridge'} has none)`, key);
    }
    const published: PublishedPort[] = [];
    try {
      for (const port of ports) published.push(await this.publishOne(key, port, target));
    } catch (error) {
      await Promise.all(published.map((p) => p.close()));
      throw error;
    }
    return published;
  }

  private publishOne(key: string, port: PortMapping, target: Endpoint): Promise<PublishedPort> {
    return this.publisher.publish({
      hostIP: port.hostIP,
      hostPort: port.hostPort ?? 0,
      protocol: port.protocol ?? 'tcp',
      targetIP: target.ip,
      targetPort: port.containerPort,
      targetInterface: target.network.bridge,
      owner: `container ${key}`,
    });
  }

  private renderFiles(request: AttachRequest, endpoints: Endpoint[]): { hostsFile: string; resolvConf: string } {
    const hostname = request.spec.hostname ?? request.name;
    const first = endpoints[0];
    const hostsFile = renderHostsFile({
      hostname,
      domainname: request.spec.domainname,
      containerName: request.name,
      aliases: [...new Set(endpoints.flatMap((e) => e.names.aliases ?? []))].filter((a) => a !== hostname && a !== request.name),
      addresses: endpoints.map((e) => e.ip),
      extraHosts: request.spec.extraHosts,
      hostGatewayIP: first?.network.gateway,
    });
    // The embedded server first: it answers our names and forwards the rest (spec.dns servers
    // come after it, since it cannot forward per container). ndots:0 as Docker writes it.
    const hostConf = readHostResolvConf();
    const nameservers = first ? [first.network.gateway, ...(request.spec.dns ?? [])] : (request.spec.dns ?? []);
    const resolvConf = nameservers.length > 0 ? renderResolvConf({ nameservers, search: hostConf.search, options: ['ndots:0'] }) : '';
    return { hostsFile, resolvConf };
  }

  private writeFiles(id: string, files: { hostsFile: string; resolvConf: string }): void {
    const dir = path.join(this.paths.containers, id);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    rewriteFile(path.join(dir, 'hosts'), files.hostsFile);
    if (files.resolvConf !== '') rewriteFile(path.join(dir, 'resolv.conf'), files.resolvConf);
  }

  private setUpIfDown(link: string, netnsPath: string): void {
    if (!this.host.linkList(netnsPath).find((l) => l.name === link)?.up) this.host.setLinkUp(link, netnsPath);
  }

  private deleteLinkIfPresent(name: string): void {
    try {
      this.host.deleteLink(name);
    } catch (error) {
      if (errnoOf(error) !== 'ENODEV') throw error;
    }
  }

  private requireRegistered(namespace: string, name: string): RegisteredNetwork {
    const network = this.networks.get(networkKey(namespace, name));
    if (!network) throw new NetworkError('D2P_NETWORK_INVALID', `network ${namespace}/${name} is not registered`, { network: `${namespace}/${name}` });
    return network;
  }

  private ownerOf(ip: string): AttachedContainer | undefined {
    for (const container of this.containers.values()) if (container.endpoints.some((e) => e.ip === ip)) return container;
    return undefined;
  }

  /** A container resolves the names of every network it is on (Docker's sandbox does too). */
  private networksOf(ip: string): string[] {
    return this.ownerOf(ip)?.endpoints.map((e) => e.network.key) ?? [];
  }

  /** Docker's embedded DNS forwards nothing for a container whose networks are all internal. */
  private forwardFor(ip: string): boolean {
    return this.ownerOf(ip)?.endpoints.some((e) => !e.network.internal) ?? false;
  }
}

export function networkKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? DEFAULT_NAMESPACE}/${name}`;
}

function sameAddressing(a: BridgeNetwork, b: BridgeNetwork): boolean {
  return a.subnet === b.subnet && a.gateway === b.gateway && a.ipRange === b.ipRange;
}

/** Names a container answers to on one network: its name, service, aliases and hostname. */
function dnsRecordOf(request: AttachRequest, aliases: string[], ip: string): DnsRecord {
  const service = request.labels?.[COMPOSE_LABELS.service];
  const names = [service, ...aliases, request.spec.hostname].filter((n): n is string => n !== undefined && n !== request.name);
  return { name: request.name, ips: [ip], aliases: [...new Set(names)] };
}

function portInfo(port: PublishedPort): PublishedPortInfo {
  return { hostIP: port.hostIP, hostPort: port.hostPort, containerPort: port.targetPort, protocol: port.protocol };
}

/**
 * hosts and resolv.conf are bind-mounted into the container when its process starts, and a
 * bind mount holds the inode: a new file renamed over the path would never be seen by a
 * running container. So an existing file is rewritten in place (O_TRUNC, then write), as
 * Docker's libnetwork rewrites a running container's /etc/hosts (etchosts.Build uses
 * os.WriteFile); only a file that does not exist yet is written atomically.
 */
function rewriteFile(file: string, content: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_TRUNC);
  } catch (error) {
    if (errnoOf(error) !== 'ENOENT') throw error;
    writeFileAtomic(file, content, 0o644);
    return;
  }
  try {
    fs.writeFileSync(fd, content);
  } finally {
    fs.closeSync(fd);
  }
}

function readHostResolvConf(): { search: string[] } {
  try {
    return parseResolvConf(fs.readFileSync('/etc/resolv.conf', 'utf8'));
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return { search: [] };
    throw error;
  }
}

// ---------------------------------------------------------------------------- one per root

const byRoot = new Map<string, Networking>();

/**
 * The daemon's Networking for a state root, shared by the Network and Container
 * controllers (both run in the daemon process and must see the same allocators and DNS).
 */
export function networkingFor(paths: Paths, make: () => Networking = () => new Networking({ paths, nat: defaultPortNat() })): Networking {
  let networking = byRoot.get(paths.root);
  if (!networking) {
    networking = make();
    byRoot.set(paths.root, networking);
  }
  return networking;
}

/** Closes and forgets the shared Networking of a root (daemon stop, tests). */
export async function closeNetworkingFor(paths: Paths): Promise<void> {
  const networking = byRoot.get(paths.root);
  byRoot.delete(paths.root);
  await networking?.close();
}

/**
 * Kernel NAT for published ports where iptables exists (it carries the traffic in the
 * kernel: 0.9–1.2× direct throughput against 0.3–0.5× for the proxy, hack/bench/ports.js); the
 * proxy alone elsewhere.
 */
function defaultPortNat(): PortNat | undefined {
  const iptables = findIptables();
  return iptables === undefined ? undefined : new IptablesNat({ iptables });
}
