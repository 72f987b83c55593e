// Registry credentials and challenges.
//  - WWW-Authenticate parsing per RFC 7235 §4.1 (auth-scheme, then auth-params with
//    token or quoted-string values), as the distribution token spec uses it:
//    Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"
//  - The `~/.docker/config.json` credential file: { "auths": { "<registry>": { "auth": base64("user:password") } } }.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { ImageError, errnoCode } from './errors';
import { DOCKER_HUB } from './reference';

export interface Credentials {
  username: string;
  password: string;
}

export interface Challenge {
  /** Lower-cased scheme, e.g. "bearer" or "basic". */
  scheme: string;
  params: Record<string, string>;
}

const TOKEN_CHARS = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

/** Parses a WWW-Authenticate value into its challenges; throws on malformed input. */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  let i = 0;
  const skipSpaces = () => {
    while (i < header.length && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < header.length && TOKEN_CHARS.test(header[i] as string)) i++;
    return header.slice(start, i);
  };
  const fail = (why: string) =>
    new ImageError('D2P_IMAGE_REGISTRY', `malformed WWW-Authenticate header ${JSON.stringify(header)}: ${why} at offset ${i}`);
  const readQuoted = (): string => {
    i++; // opening quote
    let value = '';
    while (i < header.length && header[i] !== '"') {
      if (header[i] === '\\' && i + 1 < header.length) i++;
      value += header[i];
      i++;
    }
    if (header[i] !== '"') throw fail('unterminated quoted string');
    i++;
    return value;
  };
  while (i < header.length) {
    skipSpaces();
    if (header[i] === ',') {
      i++;
      continue;
    }
    if (i >= header.length) break;
    const scheme = readToken();
    if (!scheme) throw fail('expected an auth scheme');
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    challenges.push(challenge);
    skipSpaces();
    // auth-params: name=value pairs separated by commas, until the next scheme.
    for (;;) {
      skipSpaces();
      const save = i;
      const name = readToken();
      skipSpaces();
      if (!name || header[i] !== '=') {
        i = save;
        break;
      }
      i++;
      skipSpaces();
      const value = header[i] === '"' ? readQuoted() : readToken();
      challenge.params[name.toLowerCase()] = value;
      skipSpaces();
      if (header[i] === ',') i++;
      else break;
    }
  }
  if (challenges.length === 0) throw fail('no challenge');
  return challenges;
}

export function basicAuthorization(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;
}

/** Docker keys Docker Hub credentials by its v1 index URL; everything else by host[:port]. */
const DOCKER_HUB_AUTH_KEYS = ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];

function authKeysFor(registry: string): string[] {
  return registry === DOCKER_HUB ? DOCKER_HUB_AUTH_KEYS : [registry, `https://${registry}`, `http://${registry}`];
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string }>;
  [other: string]: unknown;
}

function readConfigFile(file: string): DockerConfigFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return {};
    throw e;
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
    return parsed as DockerConfigFile;
  } catch (e) {
    throw new ImageError('D2P_IMAGE_INVALID', `credential file ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/** Credentials for a registry from a docker config.json-style file, or undefined. */
export function readCredentials(file: string, registry: string): Credentials | undefined {
  const auths = readConfigFile(file).auths ?? {};
  for (const key of authKeysFor(registry)) {
    const entry = auths[key];
    if (!entry) continue;
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon === -1) {
        throw new ImageError('D2P_IMAGE_INVALID', `credential file ${file}: auths[${JSON.stringify(key)}].auth is not base64("user:password")`, {
          registry,
        });
      }
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password };
  }
  return undefined;
}

/** Writes the file atomically (temp, fsync, rename) with mode 0600: it holds passwords. */
function writeConfigFile(file: string, config: DockerConfigFile): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(config, null, '\t') + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

export function storeCredentials(file: string, registry: string, c: Credentials): void {
  const config = readConfigFile(file);
  const auths = { ...(config.auths ?? {}) };
  const key = registry === DOCKER_HUB ? (DOCKER_HUB_AUTH_KEYS[0] as string) : registry;
  auths[key] = { auth: Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64') };
  writeConfigFile(file, { ...config, auths });
}

export function removeCredentials(file: string, registry: string): boolean {
  const config = readConfigFile(file);
  const auths = { ...(config.auths ?? {}) };
  let removed = false;
  for (const key of authKeysFor(registry)) {
    if (key in auths) {
      delete auths[key];
      removed = true;
    }
  }
  if (removed) writeConfigFile(file, { ...config, auths });
  return removed;
}
