import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { parseResolvConf, renderHostnameFile, renderHostsFile, renderResolvConf } from '../../src/network/hosts-files';

describe('container /etc files', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-hosts-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('renders /etc/hosts as Docker does: localhost lines, extra_hosts, then the own line', () => {
    const text = renderHostsFile({
      hostname: 'web',
      domainname: 'shop.local',
      containerName: 'shop-web-1',
      aliases: ['www', 'web'],
      addresses: ['172.18.0.2'],
      extraHosts: [
        { hostname: 'db.example', ip: '192.0.2.10' },
        { hostname: 'host.docker.internal', ip: 'host-gateway' },
      ],
      hostGatewayIP: '172.18.0.1',
    });
    expect(text.split('\n')).toEqual([
      '127.0.0.1\tlocalhost',
      '::1\tlocalhost ip6-localhost ip6-loopback',
      'fe00::0\tip6-localnet',
      'ff00::0\tip6-mcastprefix',
      'ff02::1\tip6-allnodes',
      'ff02::2\tip6-allrouters',
      '192.0.2.10\tdb.example',
      '172.18.0.1\thost.docker.internal',
      '172.18.0.2\tweb.shop.local web shop-web-1 www',
      '',
    ]);
    // What glibc would read back: every name of the container maps to its address.
    const file = path.join(dir, 'hosts');
    fs.writeFileSync(file, text);
    const names = new Map(fs.readFileSync(file, 'utf8').trim().split('\n').flatMap((line) => {
      const [ip, ...hostnames] = line.split(/\s+/);
      return hostnames.map((h) => [h, ip] as const);
    }));
    expect(names.get('shop-web-1')).toBe('172.18.0.2');
    expect(names.get('host.docker.internal')).toBe('172.18.0.1');
  });

  it('writes no own line without an address (network_mode: none)', () => {
    expect(renderHostsFile({ hostname: 'solo', addresses: [] })).not.toContain('solo');
  });

  it('names the offending extra_hosts entry', () => {
    expect(() => renderHostsFile({ hostname: 'web', addresses: [], extraHosts: [{ hostname: 'a', ip: '1.2.3.4' }, { hostname: 'bad', ip: 'nope' }] })).toThrow(/extraHosts\[1\] \(bad\): invalid IP address "nope"/);
    expect(() => renderHostsFile({ hostname: 'web', addresses: [], extraHosts: [{ hostname: 'gw', ip: 'host-gateway' }] })).toThrow(/extraHosts\[0\] \(gw\): "host-gateway" needs/);
  });

  it('renders resolv.conf pointing at the embedded DNS, with search and options', () => {
    expect(renderResolvConf({ nameservers: ['172.18.0.1'], search: ['corp.example'], options: ['ndots:0'] })).toBe('nameserver 172.18.0.1\nsearch corp.example\noptions ndots:0\n');
    expect(() => renderResolvConf({ nameservers: [], search: [], options: [] })).toThrow(/at least one nameserver/);
    expect(() => renderResolvConf({ nameservers: ['dns.example'], search: [], options: [] })).toThrow(/invalid nameserver "dns.example"/);
  });

  it('parses resolv.conf back, comments and the last search/domain line winning', () => {
    const host = '# from DHCP\nnameserver 192.0.2.1\ndomain old.example\nsearch a.example b.example # two\noptions ndots:2 timeout:1\nnameserver 192.0.2.2\n';
    expect(parseResolvConf(host)).toEqual({ nameservers: ['192.0.2.1', '192.0.2.2'], search: ['a.example', 'b.example'], options: ['ndots:2', 'timeout:1'] });
    const rendered = renderResolvConf(parseResolvConf(host));
    expect(parseResolvConf(rendered)).toEqual(parseResolvConf(host));
  });

  it('renders /etc/hostname and rejects a name that is not RFC 1123', () => {
    expect(renderHostnameFile('shop-web-1')).toBe('shop-web-1\n');
    expect(() => renderHostnameFile('bad_name!')).toThrow(/invalid hostname "bad_name!"/);
    expect(() => renderHostnameFile('-lead')).toThrow(/invalid hostname/);
  });
});
