// The addon's rtnetlink functions against the real kernel, inside hack/sandbox's private
// network namespace, every result checked independently with iproute2's `ip -j`.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { addon } from '../../addon/index';
import * as netlink from '../../addon/netlink';

if (process.env.D2P_SANDBOX !== '1') {
  throw new Error(
    'test/integration/netlink.test.ts creates bridges, veths and routes and must run inside the ' +
      'sandbox (D2P_SANDBOX=1): hack/sandbox npx vitest run --project integration test/integration/netlink.test.ts',
  );
}

// ---- independent observation through iproute2 ----

interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  master?: string;
  address?: string;
  linkinfo?: { info_kind?: string };
}
interface IpAddrInfo {
  family: string;
  local: string;
  prefixlen: number;
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  metric?: number;
}

function ip<T>(args: string[], netns?: string): T {
  const command = netns ? ['nsenter', `--net=${netns}`, 'ip', '-j', ...args] : ['ip', '-j', ...args];
  const output = execFileSync(command[0], command.slice(1), { encoding: 'utf8' });
  return JSON.parse(output) as T;
}

function ipLinks(netns?: string): IpLink[] {
  return ip<IpLink[]>(['-d', 'link', 'show'], netns);
}

function ipLink(name: string, netns?: string): IpLink | undefined {
  return ipLinks(netns).find((link) => link.ifname === name);
}

function ipAddresses(name: string, netns?: string): string[] {
  const [link] = ip<{ addr_info: IpAddrInfo[] }[]>(['addr', 'show', 'dev', name], netns);
  return link.addr_info.map((info) => `${info.local}/${info.prefixlen}`);
}

function ipRoutes(family: '-4' | '-6', netns?: string): IpRoute[] {
  return ip<IpRoute[]>([family, 'route', 'show'], netns);
}

// `ip -o link` is the plain listing a person would read; no test link may remain in it.
function ipOneLineLinkNames(): string[] {
  return execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split(':')[1].trim().split('@')[0]);
}

// ---- per-test resources, released in afterEach even when the test failed ----

let tempDir = '';
let cleanups: (() => void)[] = [];

beforeEach(() => {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-netlink-'));
  cleanups = [];
});

afterEach(() => {
  const failures: unknown[] = [];
  for (const cleanup of cleanups.reverse()) {
    try {
      cleanup();
    } catch (error) {
      failures.push(error);
    }
  }
  fs.rmSync(tempDir, { recursive: true, force: true });
  if (failures.length > 0) throw new AggregateError(failures, 'netlink test cleanup failed');
});

function linkName(prefix: string): string {
  const name = `${prefix}${randomBytes(3).toString('hex')}`;
  // Checked by `ip` itself so that cleanup does not depend on the code under test.
  cleanups.push(() => {
    if (ipLink(name)) execFileSync('ip', ['link', 'del', name]);
  });
  return name;
}

// A network namespace kept alive by a bind mount on a file in this test's temp dir
// (unshare(1) --net=FILE), removed by unmounting it; its links die with it.
function newNetns(): string {
  const file = path.join(tempDir, `netns-${randomBytes(3).toString('hex')}`);
  fs.writeFileSync(file, '');
  execFileSync('unshare', [`--net=${file}`, 'true']);
  cleanups.push(() => execFileSync('umount', [file]));
  return file;
}

function thrown(action: () => unknown): netlink.NetlinkError {
  try {
    action();
  } catch (error) {
    if (netlink.isNetlinkError(error)) return error;
    throw new Error(`expected a NetlinkError, got ${String(error)}`);
  }
  throw new Error('expected the call to throw');
}

describe('links', () => {
  it('creates, raises, lists and deletes a bridge', () => {
    const bridge = linkName('nlbr');
    netlink.linkAddBridge(bridge, { mtu: 1400 });

    const created = netlink.linkGet(bridge);
    const seen = ipLink(bridge);
    expect(seen).toBeDefined();
    expect(created).toMatchObject({ index: seen!.ifindex, name: bridge, type: 'bridge', mtu: 1400, up: false });
    expect(seen!.linkinfo?.info_kind).toBe('bridge');
    expect(seen!.mtu).toBe(1400);
    expect(created.macAddress).toBe(seen!.address);

    netlink.linkSetUp(bridge);
    expect(ipLink(bridge)!.flags).toContain('UP');
    expect(netlink.linkGet(bridge).up).toBe(true);

    const listed = netlink.linkList().find((link) => link.name === bridge);
    expect(listed).toEqual(netlink.linkGet(bridge));
    expect(netlink.linkList().map((link) => link.name).sort()).toEqual(ipLinks().map((link) => link.ifname).sort());

    netlink.linkSetDown(bridge);
    expect(ipLink(bridge)!.flags).not.toContain('UP');

    netlink.linkDel(bridge);
    expect(ipLink(bridge)).toBeUndefined();
    expect(ipOneLineLinkNames()).not.toContain(bridge);
  });

  it('refuses a duplicate with EEXIST and a missing link with ENODEV, naming it', () => {
    const bridge = linkName('nlbr');
    netlink.linkAddBridge(bridge);

    const duplicate = thrown(() => netlink.linkAddBridge(bridge));
    expect(duplicate).toMatchObject({ code: 'EEXIST', errno: -os.constants.errno.EEXIST, syscall: 'netlink RTM_NEWLINK', object: bridge });
    expect(duplicate.message).toContain(bridge);

    const missing = linkName('nlno');
    const deleteMissing = thrown(() => netlink.linkDel(missing));
    expect(deleteMissing).toMatchObject({ code: 'ENODEV', errno: -os.constants.errno.ENODEV, syscall: 'netlink RTM_DELLINK', object: missing });
    expect(deleteMissing.message).toContain(missing);

    const getMissing = thrown(() => netlink.linkGet(missing));
    expect(getMissing).toMatchObject({ code: 'ENODEV', syscall: 'netlink RTM_GETLINK', object: missing });
    expect(getMissing.message).toMatch(/no such link/);

    expect(thrown(() => netlink.linkSetUp(missing)).code).toBe('ENODEV');
    expect(thrown(() => netlink.linkSetMaster(bridge, missing)).object).toBe(missing);
  });

  it('enslaves to a bridge, releases, changes MTU and renames', () => {
    const bridge = linkName('nlbr');
    const host = linkName('nlvh');
    const peer = linkName('nlvp');
    const renamed = linkName('nlrn');
    netlink.linkAddBridge(bridge);
    netlink.linkAddVeth(host, peer, { mtu: 1450 });

    expect(ipLink(host)!.linkinfo?.info_kind).toBe('veth');
    expect(ipLink(peer)!.mtu).toBe(1450);

    netlink.linkSetMaster(host, bridge);
    expect(ipLink(host)!.master).toBe(bridge);
    expect(netlink.linkGet(host).master).toBe(bridge);

    netlink.linkSetMaster(host, null);
    expect(ipLink(host)!.master).toBeUndefined();
    expect(netlink.linkGet(host).master).toBeUndefined();

    netlink.linkSetMtu(peer, 1300);
    expect(ipLink(peer)!.mtu).toBe(1300);

    netlink.linkSetName(peer, renamed);
    expect(ipLink(peer)).toBeUndefined();
    expect(ipLink(renamed)!.linkinfo?.info_kind).toBe('veth');

    // Deleting one end of a veth pair deletes the pair (veth(4)).
    netlink.linkDel(host);
    expect(ipOneLineLinkNames()).not.toContain(host);
    expect(ipOneLineLinkNames()).not.toContain(renamed);
  });

  it('connects a second namespace to a bridge through a veth pair that carries a ping', () => {
    const netns = newNetns();
    const bridge = linkName('nlbr');
    const host = linkName('nlvh');
    const peer = linkName('nlvp');
    const before = fs.readlinkSync('/proc/thread-self/ns/net');

    netlink.linkAddBridge(bridge);
    netlink.addrAdd(bridge, '10.231.0.1/24');
    netlink.linkSetUp(bridge);
    netlink.linkAddVeth(host, peer);
    netlink.linkSetMaster(host, bridge);
    netlink.linkSetUp(host);
    netlink.linkSetNetns(peer, netns);
    expect(ipLink(peer)).toBeUndefined();
    expect(ipLink(peer, netns)).toBeDefined();

    netlink.linkSetName(peer, 'eth0', { netns });
    netlink.addrAdd('eth0', '10.231.0.2/24', { netns });
    netlink.linkSetUp('lo', { netns });
    netlink.linkSetUp('eth0', { netns });
    netlink.routeAdd({ dst: 'default', gateway: '10.231.0.1', dev: 'eth0' }, { netns });

    // The Node thread never left its own namespace.
    expect(fs.readlinkSync('/proc/thread-self/ns/net')).toBe(before);
    expect(netlink.linkList().some((link) => link.name === 'eth0')).toBe(false);

    expect(ipLink('eth0', netns)!.flags).toContain('UP');
    expect(ipAddresses('eth0', netns)).toContain('10.231.0.2/24');
    expect(netlink.addrList('eth0', { netns }).filter((a) => a.family === 4).map((a) => a.cidr)).toEqual(['10.231.0.2/24']);
    expect(ipRoutes('-4', netns)).toContainEqual(expect.objectContaining({ dst: 'default', gateway: '10.231.0.1', dev: 'eth0' }));
    expect(netlink.routeList({ netns, family: 4 })).toContainEqual(
      expect.objectContaining({ family: 4, dst: 'default', gateway: '10.231.0.1', dev: 'eth0', protocol: 'boot' }),
    );
    const eth0 = netlink.linkGet('eth0', { netns });
    expect(eth0).toMatchObject({ name: 'eth0', type: 'veth', up: true, index: ipLink('eth0', netns)!.ifindex });

    const ping = spawnSync('nsenter', [`--net=${netns}`, 'busybox', 'ping', '-c1', '-W5', '10.231.0.1'], { encoding: 'utf8' });
    expect(ping.status, `${ping.stdout}${ping.stderr}`).toBe(0);
    expect(ping.stdout).toMatch(/1 packets received/);

    netlink.linkDel(host);
    expect(ipOneLineLinkNames()).not.toContain(host);
    expect(ipLink('eth0', netns)).toBeUndefined();
  });

  it('creates the peer directly inside another namespace', () => {
    const netns = newNetns();
    const host = linkName('nlvh');
    const peer = linkName('nlvp');
    netlink.linkAddVeth(host, peer, { peerNetnsPath: netns });

    expect(ipLink(host)).toBeDefined();
    expect(ipLink(peer)).toBeUndefined();
    expect(ipLink(peer, netns)!.linkinfo?.info_kind).toBe('veth');
    expect(netlink.linkList({ netns }).map((link) => link.name).sort()).toEqual(['lo', peer].sort());

    netlink.linkDel(peer, { netns });
    expect(ipLink(peer, netns)).toBeUndefined();
    expect(ipOneLineLinkNames()).not.toContain(host);
  });
});

describe('addresses and routes', () => {
  it('adds, lists and deletes IPv4 and IPv6 addresses', () => {
    const bridge = linkName('nlbr');
    netlink.linkAddBridge(bridge);
    netlink.addrAdd(bridge, '10.232.0.1/24');
    netlink.addrAdd(bridge, 'fd00:232::1/64');

    expect(ipAddresses(bridge)).toEqual(expect.arrayContaining(['10.232.0.1/24', 'fd00:232::1/64']));
    const listed = netlink.addrList(bridge);
    expect(listed).toContainEqual({
      index: ipLink(bridge)!.ifindex,
      link: bridge,
      family: 4,
      address: '10.232.0.1',
      prefixLength: 24,
      cidr: '10.232.0.1/24',
    });
    expect(listed).toContainEqual(expect.objectContaining({ family: 6, cidr: 'fd00:232::1/64' }));
    expect(netlink.addrList().filter((a) => a.link === bridge)).toEqual(listed);

    expect(thrown(() => netlink.addrAdd(bridge, '10.232.0.1/24'))).toMatchObject({ code: 'EEXIST', syscall: 'netlink RTM_NEWADDR' });

    netlink.addrDel(bridge, '10.232.0.1/24');
    netlink.addrDel(bridge, 'fd00:232::1/64');
    expect(ipAddresses(bridge)).not.toContain('10.232.0.1/24');
    expect(ipAddresses(bridge)).not.toContain('fd00:232::1/64');

    const missing = thrown(() => netlink.addrDel(bridge, '10.232.0.1/24'));
    expect(missing).toMatchObject({ code: 'EADDRNOTAVAIL', syscall: 'netlink RTM_DELADDR' });
    expect(missing.object).toContain('10.232.0.1/24');
    expect(missing.object).toContain(bridge);
  });

  it('adds, lists and deletes IPv4 and IPv6 routes', () => {
    const bridge = linkName('nlbr');
    netlink.linkAddBridge(bridge);
    netlink.linkSetUp(bridge);
    netlink.addrAdd(bridge, '10.233.0.1/24');
    netlink.addrAdd(bridge, 'fd00:233::1/64');

    netlink.routeAdd({ dst: '10.234.0.0/16', gateway: '10.233.0.254', metric: 7 });
    netlink.routeAdd({ dst: '10.235.0.0/16', dev: bridge });
    netlink.routeAdd({ dst: 'fd00:234::/48', gateway: 'fd00:233::fe', dev: bridge });

    expect(ipRoutes('-4')).toContainEqual(expect.objectContaining({ dst: '10.234.0.0/16', gateway: '10.233.0.254', dev: bridge, metric: 7 }));
    expect(ipRoutes('-4')).toContainEqual(expect.objectContaining({ dst: '10.235.0.0/16', dev: bridge }));
    expect(ipRoutes('-6')).toContainEqual(expect.objectContaining({ dst: 'fd00:234::/48', gateway: 'fd00:233::fe', dev: bridge }));

    const routes = netlink.routeList();
    expect(routes).toContainEqual(expect.objectContaining({ family: 4, dst: '10.234.0.0/16', gateway: '10.233.0.254', dev: bridge, metric: 7 }));
    expect(routes).toContainEqual(expect.objectContaining({ family: 4, dst: '10.235.0.0/16', dev: bridge, scope: 'link' }));
    expect(routes).toContainEqual(expect.objectContaining({ family: 6, dst: 'fd00:234::/48', gateway: 'fd00:233::fe' }));
    expect(netlink.routeList({ family: 4 }).every((route) => route.family === 4)).toBe(true);
    expect(netlink.routeList({ family: 4 }).map((r) => r.dst).sort()).toEqual(ipRoutes('-4').map((r) => r.dst).sort());

    expect(thrown(() => netlink.routeAdd({ dst: '10.235.0.0/16', dev: bridge }))).toMatchObject({ code: 'EEXIST', syscall: 'netlink RTM_NEWROUTE' });

    netlink.routeDel({ dst: '10.234.0.0/16', gateway: '10.233.0.254' });
    netlink.routeDel({ dst: '10.235.0.0/16', dev: bridge });
    netlink.routeDel({ dst: 'fd00:234::/48', dev: bridge });
    expect(ipRoutes('-4').map((r) => r.dst)).not.toContain('10.234.0.0/16');
    expect(ipRoutes('-4').map((r) => r.dst)).not.toContain('10.235.0.0/16');
    expect(ipRoutes('-6').map((r) => r.dst)).not.toContain('fd00:234::/48');

    const missing = thrown(() => netlink.routeDel({ dst: '10.234.0.0/16', dev: bridge }));
    expect(missing).toMatchObject({ code: 'ESRCH', syscall: 'netlink RTM_DELROUTE' });
    expect(missing.object).toContain('10.234.0.0/16');
  });

  it('takes the family of a default route from its gateway', () => {
    const netns = newNetns();
    const host = linkName('nlvh');
    const peer = linkName('nlvp');
    netlink.linkAddVeth(host, peer, { peerNetnsPath: netns });
    netlink.linkSetUp(peer, { netns });
    netlink.addrAdd(peer, 'fd00:236::2/64', { netns });

    netlink.routeAdd({ dst: 'default', gateway: 'fd00:236::1', dev: peer }, { netns });
    expect(ipRoutes('-6', netns)).toContainEqual(expect.objectContaining({ dst: 'default', gateway: 'fd00:236::1', dev: peer }));
    expect(ipRoutes('-4', netns)).toEqual([]);
    expect(netlink.routeList({ netns })).toContainEqual(expect.objectContaining({ family: 6, dst: 'default', gateway: 'fd00:236::1' }));

    netlink.routeDel({ dst: 'default', gateway: 'fd00:236::1' }, { netns });
    expect(ipRoutes('-6', netns).map((route) => route.dst)).not.toContain('default');
  });
});

describe('errors', () => {
  it('passes on the kernel\'s EPERM to a caller without CAP_NET_ADMIN', () => {
    const name = linkName('nlperm');
    const addonPath = path.join(__dirname, '..', '..', 'addon', 'build', 'Release', 'd2p.node');
    const script = `
      const addon = require(${JSON.stringify(addonPath)});
      try { addon.linkAddBridge(${JSON.stringify(name)}); console.log('{}'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, errno: e.errno, syscall: e.syscall, object: e.object })); }`;
    // setpriv(1): without CAP_NET_ADMIN in the bounding set, root's exec keeps no such capability.
    const child = spawnSync('setpriv', ['--bounding-set', '-net_admin', process.execPath, '-e', script], { encoding: 'utf8' });
    expect(child.status, child.stderr).toBe(0);
    expect(JSON.parse(child.stdout)).toEqual({ code: 'EPERM', errno: -os.constants.errno.EPERM, syscall: 'netlink RTM_NEWLINK', object: name });
    expect(ipLink(name)).toBeUndefined();
  });

  it('names the offending value, argument or namespace file', () => {
    const bridge = linkName('nlbr');
    netlink.linkAddBridge(bridge);

    const badCidr = thrown(() => netlink.addrAdd(bridge, '10.0.0.1/33'));
    expect(badCidr).toMatchObject({ code: 'EINVAL', object: '10.0.0.1/33' });
    expect(badCidr.message).toContain('10.0.0.1/33');
    expect(thrown(() => netlink.routeAdd({ dst: 'default', gateway: 'not-an-ip' }))).toMatchObject({ code: 'EINVAL', object: 'not-an-ip' });

    const longName = 'a-name-over-15-bytes';
    expect(thrown(() => netlink.linkAddBridge(longName))).toMatchObject({ code: 'EINVAL', object: longName });
    expect(ipLink(longName)).toBeUndefined();

    const absent = path.join(tempDir, 'no-such-netns');
    const noNetns = thrown(() => netlink.linkList({ netns: absent }));
    expect(noNetns).toMatchObject({ code: 'ENOENT', syscall: 'open', path: absent });
    expect(noNetns.message).toContain(absent);

    const notNetns = path.join(tempDir, 'plain-file');
    fs.writeFileSync(notNetns, '');
    expect(thrown(() => netlink.linkList({ netns: notNetns }))).toMatchObject({ code: 'EINVAL', syscall: 'setns', path: notNetns });

    expect(() => netlink.linkSetMtu(bridge, -1)).toThrow(TypeError);
    expect(() => netlink.linkAddVeth(linkName('nlvh'), linkName('nlvp'), { peerNetnsFd: 0, peerNetnsPath: absent })).toThrow(
      /exclusive/,
    );
  });
});

describe('named network namespaces (addon netnsCreate)', () => {
  const netnsInode = (file: string) => fs.statSync(file).ino;

  it('makes a new namespace with only lo, up, bound to the file, and leaves the caller where it was', () => {
    const before = fs.readlinkSync('/proc/thread-self/ns/net');
    const file = path.join(tempDir, 'made-natively');
    fs.writeFileSync(file, '');
    addon().netnsCreate(file);
    cleanups.push(() => execFileSync('umount', [file]));
    expect(fs.readlinkSync('/proc/thread-self/ns/net')).toBe(before);
    expect(netnsInode(file)).not.toBe(netnsInode('/proc/self/ns/net'));
    expect(netlink.linkList({ netns: file }).map((l) => [l.name, l.up])).toEqual([['lo', true]]);
    // The same namespace as unshare(1) would have made: ip(8) can enter it.
    expect(execFileSync('nsenter', [`--net=${file}`, 'ip', '-o', 'link'], { encoding: 'utf8' })).toMatch(/^1: lo:/);
  });

  it('reports a missing file as ENOENT from mount, naming the file', () => {
    const file = path.join(tempDir, 'no-such-dir', 'netns');
    let error: unknown;
    try {
      addon().netnsCreate(file);
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'ENOENT', syscall: 'mount', path: file });
  });
});
