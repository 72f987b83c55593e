// The names the embedded DNS server answers itself, per network. A client sees only the
// networks it is attached to, as with Docker's embedded DNS (moby libnetwork/resolver.go,
// Sandbox.ResolveName): names of other networks do not exist for it.
import { isIPv4 } from 'node:net';

import { NetworkError } from './errors';

export interface DnsRecord {
  /** Container name (or any primary name). */
  name: string;
  /** Its IPv4 addresses on this network. */
  ips: string[];
  /** Service name, network aliases, hostname: each resolves to the same ips. */
  aliases?: string[];
}

interface NameEntry {
  ips: string[];
  /** Next rotation offset, so replicas behind one name take turns being first. */
  turn: number;
}

interface NetworkTable {
  names: Map<string, NameEntry>;
  /** ip → primary name, for PTR. */
  reverse: Map<string, string>;
}

/** A lookup result: `ips` empty means the name exists but has no A record (NODATA). */
export type LocalAnswer = { kind: 'A'; ips: string[] } | { kind: 'PTR'; name: string } | { kind: 'NODATA' };

/** DNS names compare case-insensitively (RFC 4343) and without the root's trailing dot. */
export function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

export class DnsRecords {
  private readonly networks = new Map<string, NetworkTable>();

  constructor(private readonly searchDomains: string[] = []) {
    this.searchDomains = searchDomains.map(normalizeName).filter((d) => d !== '');
  }

  /** Replaces every record of `network`. Rotation state of names that remain is kept. */
  setRecords(network: string, records: DnsRecord[]): void {
    const previous = this.networks.get(network);
    const table: NetworkTable = { names: new Map(), reverse: new Map() };
    for (const [index, record] of records.entries()) this.addRecord(network, table, record, index);
    for (const [name, entry] of table.names) entry.turn = previous?.names.get(name)?.turn ?? 0;
    this.networks.set(network, table);
  }

  deleteNetwork(network: string): boolean {
    return this.networks.delete(network);
  }

  /**
   * Resolves `qname` of `qtype` for a client attached to `clientNetworks` (in priority
   * order: the first network that knows the name answers, as Docker's endpoint order).
   * Undefined: not one of ours, the caller forwards it.
   */
  lookup(qname: string, qtype: string, clientNetworks: string[]): LocalAnswer | undefined {
    const name = normalizeName(qname);
    if (qtype === 'PTR') return this.lookupReverse(name, clientNetworks);
    for (const [candidate, networks] of this.candidates(name, clientNetworks)) {
      for (const network of networks) {
        const entry = this.networks.get(network)?.names.get(candidate);
        if (entry === undefined) continue;
        return qtype === 'A' || qtype === 'ANY' ? { kind: 'A', ips: rotate(entry) } : { kind: 'NODATA' };
      }
    }
    return undefined;
  }

  private addRecord(network: string, table: NetworkTable, record: DnsRecord, index: number): void {
    const where = `DNS records of network ${network}, record ${index} (${record.name})`;
    for (const ip of record.ips) {
      if (!isIPv4(ip)) throw new NetworkError('D2P_NETWORK_INVALID', `${where}: invalid IPv4 address ${JSON.stringify(ip)}`, { network, address: ip });
      if (!table.reverse.has(ip)) table.reverse.set(ip, record.name);
    }
    for (const rawName of [record.name, ...(record.aliases ?? [])]) {
      const name = normalizeName(rawName);
      if (name === '' || name.length > 253) throw new NetworkError('D2P_NETWORK_INVALID', `${where}: invalid name ${JSON.stringify(rawName)}`, { network });
      // One name on several records (a service name on each replica) gathers all their ips.
      const entry = table.names.get(name) ?? { ips: [], turn: 0 };
      for (const ip of record.ips) if (!entry.ips.includes(ip)) entry.ips.push(ip);
      table.names.set(name, entry);
    }
  }

  /** The name as asked, then without a search domain, then "name.network" restricted to that network. */
  private candidates(name: string, clientNetworks: string[]): Array<[string, string[]]> {
    const result: Array<[string, string[]]> = [[name, clientNetworks]];
    for (const domain of this.searchDomains) {
      if (name.endsWith(`.${domain}`)) result.push([name.slice(0, -domain.length - 1), clientNetworks]);
    }
    for (const network of clientNetworks) {
      const suffix = `.${normalizeName(network)}`;
      if (name.endsWith(suffix)) result.push([name.slice(0, -suffix.length), [network]]);
    }
    return result;
  }

  private lookupReverse(name: string, clientNetworks: string[]): LocalAnswer | undefined {
    const match = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\.in-addr\.arpa$/.exec(name);
    if (!match) return undefined;
    const ip = [match[4], match[3], match[2], match[1]].join('.');
    for (const network of clientNetworks) {
      const owner = this.networks.get(network)?.reverse.get(ip);
      if (owner !== undefined) return { kind: 'PTR', name: owner };
    }
    return undefined;
  }
}

function rotate(entry: NameEntry): string[] {
  if (entry.ips.length === 0) return [];
  const offset = entry.turn % entry.ips.length;
  entry.turn = (entry.turn + 1) % entry.ips.length;
  return [...entry.ips.slice(offset), ...entry.ips.slice(0, offset)];
}
