import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { isNetworkError } from '../../src/network/errors';
import {
  AddressAllocator,
  DEFAULT_ADDRESS_POOLS,
  cidrsOverlap,
  parseCidr,
  parseProcNetRoute,
  planNetworkAddressing,
  readHostRoutes,
} from '../../src/network/ipam';

function expectNetworkError(fn: () => unknown, code: string, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(isNetworkError(caught), `expected a NetworkError, got ${String(caught)}`).toBe(true);
  const error = caught as Error & { code: string };
  expect(error.code).toBe(code);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
}

describe('CIDR parsing', () => {
  it.each([
    ['10.0.0.0/8', true],
    ['172.20.0.0/16', true],
    ['172.20.0.1/16', false],
    ['300.0.0.0/8', false],
    ['fd00::/64', false],
    ['10.0.0.0', false],
    ['10.0.0.0/33', false],
  ])('%s valid: %s', (text, valid) => {
    if (valid) expect(parseCidr(text).prefixLength).toBe(Number(text.split('/')[1]));
    else expectNetworkError(() => parseCidr(text), 'D2P_NETWORK_INVALID', text);
  });

  it('says which network address a CIDR with host bits should have', () => {
    expectNetworkError(() => parseCidr('172.20.3.4/16'), 'D2P_NETWORK_INVALID', 'should be 172.20.0.0/16');
  });

  it('detects overlap both ways and its absence', () => {
    expect(cidrsOverlap(parseCidr('10.0.0.0/8'), parseCidr('10.1.2.0/24'))).toBe(true);
    expect(cidrsOverlap(parseCidr('10.1.2.0/24'), parseCidr('10.0.0.0/8'))).toBe(true);
    expect(cidrsOverlap(parseCidr('10.1.2.0/24'), parseCidr('10.1.3.0/24'))).toBe(false);
  });
});

describe('subnet allocation from the default pools', () => {
  it('has Docker\'s pools: 172.17–172.31 as /16, then 192.168.0.0/16 cut in /20', () => {
    expect(DEFAULT_ADDRESS_POOLS).toHaveLength(16);
    expect(DEFAULT_ADDRESS_POOLS[0]).toEqual({ base: '172.17.0.0/16', size: 16 });
    expect(DEFAULT_ADDRESS_POOLS[14]).toEqual({ base: '172.31.0.0/16', size: 16 });
    expect(DEFAULT_ADDRESS_POOLS[15]).toEqual({ base: '192.168.0.0/16', size: 20 });
  });

  it('takes the first pool when nothing is used, gateway = first host address', () => {
    expect(planNetworkAddressing({ network: 'shop_default', usedSubnets: [] })).toEqual({ subnet: '172.17.0.0/16', gateway: '172.17.0.1' });
  });

  it('walks past subnets of other networks and host routes', () => {
    const plan = planNetworkAddressing({
      network: 'shop_back',
      usedSubnets: ['172.17.0.0/16', '172.19.0.0/16'],
      hostRoutes: ['172.18.5.0/24'],
    });
    expect(plan.subnet).toBe('172.20.0.0/16');
  });

  it('continues into 192.168.0.0/20 steps when 172.17–31 are all taken', () => {
    const used = Array.from({ length: 15 }, (_, i) => `172.${17 + i}.0.0/16`);
    expect(planNetworkAddressing({ network: 'n', usedSubnets: used }).subnet).toBe('192.168.0.0/20');
    expect(planNetworkAddressing({ network: 'n', usedSubnets: used, hostRoutes: ['192.168.1.0/24'] }).subnet).toBe('192.168.16.0/20');
  });

  it('a host route that covers a whole pool (172.16.0.0/12) skips all of it', () => {
    expect(planNetworkAddressing({ network: 'n', usedSubnets: [], hostRoutes: ['172.16.0.0/12'] }).subnet).toBe('192.168.0.0/20');
  });

  it('fails naming the network when every pool subnet is taken', () => {
    const pools = [{ base: '10.9.0.0/23', size: 24 }];
    expectNetworkError(
      () => planNetworkAddressing({ network: 'shop_extra', usedSubnets: ['10.9.0.0/24'], hostRoutes: ['10.9.1.0/24'], pools }),
      'D2P_NETWORK_POOL_EXHAUSTED',
      'shop_extra',
    );
  });

  it('accepts a user subnet, gateway and ipRange, and rejects overlap with another network', () => {
    expect(planNetworkAddressing({ network: 'n', subnet: '10.5.0.0/16', gateway: '10.5.0.254', ipRange: '10.5.1.0/24', usedSubnets: ['172.17.0.0/16'] })).toEqual({
      subnet: '10.5.0.0/16',
      gateway: '10.5.0.254',
      ipRange: '10.5.1.0/24',
    });
    expectNetworkError(() => planNetworkAddressing({ network: 'n2', subnet: '10.5.3.0/24', usedSubnets: ['10.5.0.0/16'] }), 'D2P_NETWORK_SUBNET_OVERLAP', 'n2', '10.5.0.0/16');
  });

  it('rejects a gateway outside the subnet, an ipRange outside it and a subnet too small for a bridge', () => {
    expectNetworkError(() => planNetworkAddressing({ network: 'n', subnet: '10.5.0.0/16', gateway: '10.6.0.1', usedSubnets: [] }), 'D2P_NETWORK_ADDRESS_UNAVAILABLE', '10.6.0.1');
    expectNetworkError(() => planNetworkAddressing({ network: 'n', subnet: '10.5.0.0/16', ipRange: '10.0.0.0/8', usedSubnets: [] }), 'D2P_NETWORK_INVALID', 'ipRange');
    expectNetworkError(() => planNetworkAddressing({ network: 'n', subnet: '10.5.0.0/31', usedSubnets: [] }), 'D2P_NETWORK_INVALID', 'too small');
  });
});

describe('host routes from /proc/net/route', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-ipam-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  // Little-endian hex as the kernel prints it on x86 (route.c: "%08X" of a __be32).
  const TABLE = [
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
    'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
    'eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
    'br0\t0000120A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0',
    'down0\t0000140A\t00000000\t0000\t0\t0\t0\t0000FFFF\t0\t0\t0',
  ].join('\n');

  it('parses destinations, leaving out the default route and routes that are not up', () => {
    expect(parseProcNetRoute(TABLE)).toEqual(['192.0.2.0/24', '10.18.0.0/16']);
  });

  it('reads a route file and fails with the path when it cannot', () => {
    const file = path.join(dir, 'route');
    fs.writeFileSync(file, TABLE);
    expect(readHostRoutes(file)).toEqual(['192.0.2.0/24', '10.18.0.0/16']);
    expectNetworkError(() => readHostRoutes(path.join(dir, 'missing')), 'D2P_NETWORK_SYSTEM', path.join(dir, 'missing'));
  });

  it('reads this machine\'s real table without error', () => {
    for (const route of readHostRoutes()) expect(() => parseCidr(route)).not.toThrow();
  });
});

describe('address allocation', () => {
  const base = { network: 'shop_default', subnet: '10.7.0.0/29', gateway: '10.7.0.1' };

  it('hands out the lowest free address after the gateway, never network/broadcast/gateway', () => {
    const ipam = new AddressAllocator(base);
    // /29: .0 network, .1 gateway, .2–.6 hosts, .7 broadcast.
    expect(['a', 'b', 'c', 'd', 'e'].map((key) => ipam.allocate(key))).toEqual(['10.7.0.2', '10.7.0.3', '10.7.0.4', '10.7.0.5', '10.7.0.6']);
  });

  it('is idempotent per key', () => {
    const ipam = new AddressAllocator(base);
    const first = ipam.allocate('shop/web-1');
    expect(ipam.allocate('shop/web-1')).toBe(first);
    expect(ipam.lookup('shop/web-1')).toBe(first);
  });

  it('fails with the network name when the subnet is full', () => {
    const ipam = new AddressAllocator(base);
    for (const key of ['a', 'b', 'c', 'd', 'e']) ipam.allocate(key);
    expectNetworkError(() => ipam.allocate('f'), 'D2P_NETWORK_SUBNET_FULL', 'shop_default', '10.7.0.0/29', 'f');
  });

  it('releases and reuses the lowest freed address', () => {
    const ipam = new AddressAllocator(base);
    for (const key of ['a', 'b', 'c']) ipam.allocate(key);
    expect(ipam.release('b')).toBe(true);
    expect(ipam.release('b')).toBe(false);
    expect(ipam.lookup('b')).toBeUndefined();
    expect(ipam.allocate('d')).toBe('10.7.0.3');
  });

  it('honours a requested address and moves a key to a newly requested one', () => {
    const ipam = new AddressAllocator(base);
    expect(ipam.allocate('db', '10.7.0.6')).toBe('10.7.0.6');
    expect(ipam.allocate('web')).toBe('10.7.0.2');
    expect(ipam.allocate('web', '10.7.0.5')).toBe('10.7.0.5');
    expect(ipam.allocate('other')).toBe('10.7.0.2');
  });

  it.each([
    ['10.7.0.6', 'D2P_NETWORK_ADDRESS_IN_USE', 'already in use by db'],
    ['10.8.0.2', 'D2P_NETWORK_ADDRESS_UNAVAILABLE', 'outside subnet'],
    ['10.7.0.1', 'D2P_NETWORK_ADDRESS_UNAVAILABLE', 'gateway'],
    ['10.7.0.7', 'D2P_NETWORK_ADDRESS_UNAVAILABLE', 'broadcast'],
    ['10.7.0.0', 'D2P_NETWORK_ADDRESS_UNAVAILABLE', 'network address'],
    ['not-an-ip', 'D2P_NETWORK_INVALID', 'not-an-ip'],
  ])('a requested %s fails with %s', (requested, code, fragment) => {
    const ipam = new AddressAllocator(base);
    ipam.allocate('db', '10.7.0.6');
    expectNetworkError(() => ipam.allocate('web', requested), code, fragment);
    expect(ipam.lookup('web')).toBeUndefined();
  });

  it('takes dynamic addresses only from ipRange, static ones anywhere in the subnet', () => {
    const ipam = new AddressAllocator({ network: 'n', subnet: '10.9.0.0/24', gateway: '10.9.0.1', ipRange: '10.9.0.128/30' });
    expect(ipam.allocate('a')).toBe('10.9.0.128');
    expect(ipam.allocate('b', '10.9.0.10')).toBe('10.9.0.10');
    for (const key of ['c', 'd', 'e']) ipam.allocate(key);
    expect(ipam.toJSON()).toEqual({ a: '10.9.0.128', b: '10.9.0.10', c: '10.9.0.129', d: '10.9.0.130', e: '10.9.0.131' });
    expectNetworkError(() => ipam.allocate('f'), 'D2P_NETWORK_SUBNET_FULL', 'ipRange 10.9.0.128/30');
  });

  it('round-trips through its JSON state (Network.status.allocations)', () => {
    const first = new AddressAllocator(base);
    first.allocate('a');
    first.allocate('b', '10.7.0.5');
    first.allocate('c');
    first.release('a');
    const stored = JSON.parse(JSON.stringify(first.toJSON())) as Record<string, string>;
    expect(stored).toEqual({ b: '10.7.0.5', c: '10.7.0.3' });
    const second = new AddressAllocator({ ...base, allocations: stored });
    expect(second.lookup('b')).toBe('10.7.0.5');
    expect(second.lookup('c')).toBe('10.7.0.3');
    expect(second.allocate('d')).toBe('10.7.0.2');
    expect(second.allocate('e')).toBe('10.7.0.4');
  });

  it('rejects persisted state that is inconsistent, naming the key', () => {
    expectNetworkError(() => new AddressAllocator({ ...base, allocations: { a: '10.7.0.2', b: '10.7.0.2' } }), 'D2P_NETWORK_ADDRESS_IN_USE', 'b');
    expectNetworkError(() => new AddressAllocator({ ...base, allocations: { a: '192.168.0.2' } }), 'D2P_NETWORK_ADDRESS_UNAVAILABLE', 'a');
  });
});
