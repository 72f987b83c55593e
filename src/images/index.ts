// The image library's public face. Controllers and the CLI import from here only.
import { storeCredentials, removeCredentials } from './auth';
import { parseReference } from './reference';
import { RegistryClient, type RegistryClientOptions } from './registry';

export * from './errors';
export * from './reference';
export * from './types';
export { parseWwwAuthenticate, readCredentials, storeCredentials, removeCredentials, type Credentials, type Challenge } from './auth';
export { DEFAULT_PLATFORM, parsePlatform, formatPlatform, normalizePlatform, platformMatches, selectPlatformManifest } from './platform';
export { RegistryClient, isTransientError, type RegistryClientOptions, type RepoRef, type FetchedManifest } from './registry';
export { ImageStore, type StoredImage, type PullOptions, type ProgressEvent, type LayerState, type ImageStoreOptions } from './store';
export { LayerExtractor, parsePaxXattrs, type ExtractOptions, type ExtractResult } from './extract';
export { unpackLayer } from './unpack';
export { normalizeLayerPath, classifyWhiteout, LayerTree } from './pathsafety';
export { pushImage, pushOciLayout, saveOciLayout, loadImages, importOciLayout, type PushOptions, type PushProgress, type LoadOptions } from './layout';
export { digestOf, directoryBlobSource, type BlobSource } from './blobs';

/**
 * `docker login`: checks the credentials against the registry (its token server for Bearer
 * registries) and, only if they work, stores them in `authFile` (a docker config.json).
 * `registry` may be a host[:port] or any reference on it ("docker.io" for Docker Hub).
 */
export async function login(
  registry: string,
  username: string,
  password: string,
  opts: { authFile: string } & Omit<RegistryClientOptions, 'credentials' | 'authFile'>,
): Promise<void> {
  const host = registry.includes('/') ? parseReference(registry).registry : registry;
  const client = new RegistryClient({ ...opts, credentials: { username, password } });
  try {
    await client.checkLogin(host, { username, password });
  } finally {
    await client.close();
  }
  storeCredentials(opts.authFile, host, { username, password });
}

/** `docker logout`: forgets stored credentials; false when there were none. */
export function logout(registry: string, authFile: string): boolean {
  return removeCredentials(authFile, registry);
}
