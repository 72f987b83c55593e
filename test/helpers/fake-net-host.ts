// Stand-ins for the machine under src/network for unit tests: a NetHost that models the
// kernel's links, addresses and routes (DESIGN.md §10's recording Host), a firewall and a
// DNS server that only remember what they were told.
import type { DnsLookups, DnsService } from '../../src/network/attach';
import type { DnsRecord, ListenAddress } from '../../src/network/dns';
import { cidrContains, formatCidr, ipToNumber, parseCidr } from '../../src/network/ipam';
import type { Address, BridgeRules, Link, NetHost, NetworkFirewall, Route, RouteSpec } from '../../src/network/netns';

export interface FakeLink {
  type: string;
  up: boolean;
  master?: string;
  mtu: number;
  /** veth peer: [namespace, name]. */
  peer?: [string, string];
}

/** The name the host's own namespace goes by in these fakes. */
export const HOST_NS = 'host';

export function errno(code: string, message: string): Error {
  return Object.assign(new Error(`${message} (${code})`), { code, errno: -1, syscall: 'netlink' });
}

/**
 * A small model of the kernel: links, addresses and routes per namespace; every mutation
 * recorded. Deleting one end of a veth deletes the other (veth(4)); an address brings its
 * prefix route, and a route through a gateway goes out of the link that reaches it.
 */
export class RecordingHost implements NetHost {
  readonly calls: string[] = [];
  readonly links = new Map<string, Map<string, FakeLink>>([[HOST_NS, new Map([['lo', { type: 'loopback', up: true, mtu: 65536 }]])]]);
  readonly addresses = new Map<string, Map<string, string[]>>();
  readonly routes = new Map<string, Route[]>([[HOST_NS, []]]);
  firewall: RecordingFirewall | undefined;

  constructor(opts: { firewall?: RecordingFirewall | undefined } = { firewall: new RecordingFirewall() }) {
    this.firewall = opts.firewall;
  }

  hostRoute(dst: string, dev: string): void {
    this.routes.get(HOST_NS)!.push({ family: 4, dst, dev, protocol: 'kernel', scope: 'link', type: 'unicast' });
  }

  mutations(): string[] {
    return [...this.calls];
  }

  linkList(netns = HOST_NS): Link[] {
    return [...this.ns(netns).entries()].map(([name, l], index) => ({ index: index + 1, name, type: l.type, mtu: l.mtu, up: l.up, operState: l.up ? 'UP' : 'DOWN', ...(l.master ? { master: l.master } : {}) }));
  }

  linkExists(name: string): boolean {
    return this.ns(HOST_NS).has(name);
  }

  addrList(link: string | null, netns = HOST_NS): Address[] {
    const byLink = this.addresses.get(netns) ?? new Map<string, string[]>();
    return [...byLink.entries()]
      .filter(([name]) => link === null || name === link)
      .flatMap(([name, cidrs]) => cidrs.map((cidr) => ({ index: 0, link: name, family: 4 as const, address: cidr.split('/')[0], prefixLength: Number(cidr.split('/')[1]), cidr })));
  }

  routeList(netns = HOST_NS): Route[] {
    return structuredClone(this.routes.get(netns) ?? []);
  }

  addBridge(name: string, mtu?: number): void {
    this.calls.push(`addBridge ${name}`);
    this.addLink(HOST_NS, name, { type: 'bridge', up: false, mtu: mtu ?? 1500 });
  }

  addVeth(hostName: string, peerName: string, peerNetns: string, mtu?: number): void {
    this.calls.push(`addVeth ${hostName} ${peerName}@${peerNetns}`);
    if (!this.links.has(peerNetns)) throw errno('ENOENT', `no netns ${peerNetns}`);
    this.addLink(HOST_NS, hostName, { type: 'veth', up: false, mtu: mtu ?? 1500, peer: [peerNetns, peerName] });
    this.addLink(peerNetns, peerName, { type: 'veth', up: false, mtu: mtu ?? 1500, peer: [HOST_NS, hostName] });
  }

  deleteLink(name: string, netns = HOST_NS): void {
    this.calls.push(`deleteLink ${name}${netns === HOST_NS ? '' : `@${netns}`}`);
    const link = this.ns(netns).get(name);
    if (!link) throw errno('ENODEV', `no link ${name}`);
    this.dropLink(netns, name);
    // Deleting one end of a veth pair deletes both (veth(4)).
    if (link.peer) this.dropLink(link.peer[0], link.peer[1]);
  }

  setLinkUp(name: string, netns = HOST_NS): void {
    this.calls.push(`setLinkUp ${name}${netns === HOST_NS ? '' : `@${netns}`}`);
    this.requireLink(netns, name).up = true;
  }

  setMaster(name: string, bridge: string): void {
    this.calls.push(`setMaster ${name} ${bridge}`);
    if (this.requireLink(HOST_NS, bridge).type !== 'bridge') throw errno('EINVAL', `${bridge} is no bridge`);
    this.requireLink(HOST_NS, name).master = bridge;
  }

  addAddress(link: string, cidr: string, netns = HOST_NS): void {
    this.calls.push(`addAddress ${link} ${cidr}${netns === HOST_NS ? '' : `@${netns}`}`);
    this.requireLink(netns, link);
    const byLink = this.addresses.get(netns) ?? new Map<string, string[]>();
    this.addresses.set(netns, byLink);
    const list = byLink.get(link) ?? [];
    if (list.includes(cidr)) throw errno('EEXIST', `address ${cidr} exists`);
    byLink.set(link, [...list, cidr]);
    // The kernel adds the prefix route of a new address (proto kernel, scope link).
    const [ip, length] = cidr.split('/');
    const mask = Number(length) === 0 ? 0 : (0xffffffff << (32 - Number(length))) >>> 0;
    const dst = formatCidr({ base: (ipToNumber(ip) & mask) >>> 0, prefixLength: Number(length) });
    this.routes.set(netns, [...(this.routes.get(netns) ?? []), { family: 4, dst, dev: link, protocol: 'kernel', scope: 'link', type: 'unicast' }]);
  }

  addRoute(route: RouteSpec, netns = HOST_NS): void {
    this.calls.push(`addRoute ${route.dst} via ${route.gateway}${netns === HOST_NS ? '' : `@${netns}`}`);
    const routes = this.routes.get(netns) ?? [];
    if (routes.some((r) => r.dst === route.dst)) throw errno('EEXIST', `route ${route.dst} exists`);
    // The kernel sends it out of the link whose prefix route holds the gateway.
    const dev = route.gateway === undefined ? undefined : routes.find((r) => r.scope === 'link' && cidrContains(parseCidr(r.dst), ipToNumber(route.gateway!)))?.dev;
    routes.push({ family: 4, dst: route.dst, gateway: route.gateway, ...(dev ? { dev } : {}), protocol: 'boot', scope: 'universe', type: 'unicast' });
    this.routes.set(netns, routes);
  }

  createNetns(file: string): boolean {
    if (this.links.has(file)) return false;
    this.calls.push(`createNetns ${file}`);
    // As the addon's netnsCreate: the loopback comes up with the namespace.
    this.links.set(file, new Map([['lo', { type: 'loopback', up: true, mtu: 65536 }]]));
    this.routes.set(file, []);
    return true;
  }

  removeNetns(file: string): void {
    this.calls.push(`removeNetns ${file}`);
    for (const name of [...(this.links.get(file)?.keys() ?? [])]) {
      const link = this.links.get(file)!.get(name)!;
      if (link.peer) this.dropLink(link.peer[0], link.peer[1]);
    }
    this.links.delete(file);
    this.addresses.delete(file);
    this.routes.delete(file);
  }

  netnsExists(file: string): boolean {
    return this.links.has(file);
  }

  /** Interface name → its addresses, inside a namespace. */
  interfaces(netns: string): Record<string, string[]> {
    return Object.fromEntries([...this.ns(netns).keys()].sort().map((name) => [name, this.addrList(name, netns).map((a) => a.cidr)]));
  }

  private ns(netns: string): Map<string, FakeLink> {
    const links = this.links.get(netns);
    if (!links) throw errno('ENOENT', `no netns ${netns}`);
    return links;
  }

  private addLink(netns: string, name: string, link: FakeLink): void {
    if (this.ns(netns).has(name)) throw errno('EEXIST', `link ${name} exists`);
    this.ns(netns).set(name, link);
  }

  private requireLink(netns: string, name: string): FakeLink {
    const link = this.ns(netns).get(name);
    if (!link) throw errno('ENODEV', `no link ${name}`);
    return link;
  }

  private dropLink(netns: string, name: string): void {
    this.links.get(netns)?.delete(name);
    this.addresses.get(netns)?.delete(name);
    this.routes.set(netns, (this.routes.get(netns) ?? []).filter((r) => r.dev !== name));
  }
}

export class RecordingFirewall implements NetworkFirewall {
  readonly description = 'fake firewall';
  readonly rules = new Map<string, BridgeRules>();
  forwarding = false;
  async ensureBridgeRules(rules: BridgeRules): Promise<void> {
    this.rules.set(rules.bridge, rules);
  }
  async removeBridgeRules(rules: BridgeRules): Promise<void> {
    this.rules.delete(rules.bridge);
  }
  enableForwarding(): void {
    this.forwarding = true;
  }
}

/** The DNS server's records and listeners, kept in memory. */
export class FakeDns implements DnsService {
  readonly records = new Map<string, DnsRecord[]>();
  readonly listening: ListenAddress[] = [];
  constructor(readonly lookups: DnsLookups) {}
  setRecords(network: string, records: DnsRecord[]): void {
    this.records.set(network, structuredClone(records));
  }
  deleteNetwork(network: string): boolean {
    return this.records.delete(network);
  }
  async listen(host: string, port = 53): Promise<ListenAddress> {
    this.listening.push({ host, port });
    return { host, port };
  }
  async unlisten(host: string, port: number): Promise<boolean> {
    const index = this.listening.findIndex((l) => l.host === host && l.port === port);
    if (index >= 0) this.listening.splice(index, 1);
    return index >= 0;
  }
  listeners(): ListenAddress[] {
    return [...this.listening];
  }
  async close(): Promise<void> {
    this.listening.length = 0;
  }
  names(network: string): string[] {
    return (this.records.get(network) ?? []).map((r) => r.name);
  }
}
