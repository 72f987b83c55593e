// bin/d2p moves NODE_EXTRA_CA_CERTS aside so node starts without loading it; registry TLS
// must then still trust those CAs (src/images/extra-ca.ts).
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { EXTRA_CA_ENV, extraCaCertificates, registryTlsOptions } from '../../src/images/extra-ca';

const repo = path.resolve(__dirname, '../..');
let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'd2p-extra-ca-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A private CA and a server certificate for 127.0.0.1 signed by it. */
function makeCa(): { caFile: string; key: Buffer; cert: Buffer } {
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=d2p test CA', '-keyout', 'ca.key', '-out', 'ca.pem');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr');
  fs.writeFileSync(path.join(dir, 'san.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'san.cnf', '-out', 'server.pem');
  return { caFile: path.join(dir, 'ca.pem'), key: fs.readFileSync(path.join(dir, 'server.key')), cert: fs.readFileSync(path.join(dir, 'server.pem')) };
}

describe('extra CA certificates for registries', () => {
  it('adds the file to the bundled roots, and nothing when unset', () => {
    const file = path.join(dir, 'one.pem');
    fs.writeFileSync(file, '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n');
    const { ca } = extraCaCertificates({ [EXTRA_CA_ENV]: file });
    expect(ca?.at(-1)).toBe(fs.readFileSync(file, 'utf8'));
    expect(ca!.length).toBeGreaterThan(1);
    expect(extraCaCertificates({})).toEqual({});
  });

  it('an unreadable file is a warning naming it, as node does, not a failure', () => {
    const missing = path.join(dir, 'missing.pem');
    expect(extraCaCertificates({ [EXTRA_CA_ENV]: missing })).toEqual({ warning: `ignoring extra certs from ${missing} (${EXTRA_CA_ENV}): ENOENT` });
  });

  it('a registry agent trusts a server signed by the extra CA, and refuses it without', async () => {
    const { caFile, key, cert } = makeCa();
    const server = https.createServer({ key, cert }, (_req, res) => res.end('{}'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/v2/`;
    const trusting = new Agent({ connect: registryTlsOptions({ [EXTRA_CA_ENV]: caFile }) });
    const plain = new Agent({ connect: registryTlsOptions({}) });
    try {
      const ok = await request(url, { dispatcher: trusting });
      expect(ok.statusCode).toBe(200);
      await ok.body.text();
      await expect(request(url, { dispatcher: plain })).rejects.toThrow(/certificate/);
    } finally {
      await Promise.all([trusting.close(), plain.close()]);
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('bin/d2p starts node without NODE_EXTRA_CA_CERTS, hands the file on in D2P_EXTRA_CA_CERTS, and picks V8 flags by command', () => {
    // A stand-in `node` first on PATH shows what the real one would have been given.
    const fakeBin = path.join(dir, 'bin');
    fs.mkdirSync(fakeBin, { recursive: true });
    fs.writeFileSync(path.join(fakeBin, 'node'), '#!/bin/sh\necho "node=${NODE_EXTRA_CA_CERTS-unset} d2p=${D2P_EXTRA_CA_CERTS-unset} args=$*"\n', { mode: 0o755 });
    const bin = path.join(repo, 'bin', 'd2p');
    const run = (env: NodeJS.ProcessEnv, args = ['get', 'pods']) => spawnSync(bin, args, { env: { PATH: `${fakeBin}:/usr/bin:/bin`, ...env }, encoding: 'utf8' });
    expect(run({ NODE_EXTRA_CA_CERTS: '/etc/ca.pem' }).stdout.trim()).toBe(`node=unset d2p=/etc/ca.pem args=${bin} get pods`);
    expect(run({}).stdout.trim()).toBe(`node=unset d2p=unset args=${bin} get pods`);
    // One-pass conversions of a whole project run without the optimizing compiler.
    expect(run({}, ['apply', '-f', 'compose.yml']).stdout.trim()).toBe(`node=unset d2p=unset args=--max-opt=1 ${bin} apply -f compose.yml`);
  });
});
