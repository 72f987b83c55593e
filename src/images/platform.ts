// Platform selection in manifest lists / OCI indexes, normalised the way containerd's
// platforms package does, so "linux/arm64" matches an entry with variant "v8" and
// "linux/arm" means v7.
import { ImageError } from './errors';
import type { Descriptor, Platform } from './types';

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64', armhf: 'arm', i686: '386', i386: '386' };

export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  const architecture = ARCH_ALIASES[p.architecture.toLowerCase()] ?? p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  if (variant !== undefined && /^\d+$/.test(variant)) variant = `v${variant}`;
  if (architecture === 'arm64' && variant === 'v8') variant = undefined;
  if (architecture === 'arm' && variant === undefined) variant = 'v7';
  if (architecture === 'amd64' && variant === 'v1') variant = undefined;
  return { os, architecture, ...(variant !== undefined ? { variant } : {}) };
}

/** "linux/arm/v7" → { os, architecture, variant }. */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw new ImageError('D2P_IMAGE_PLATFORM', `invalid platform ${JSON.stringify(s)}: expected os/arch[/variant], e.g. linux/arm64`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return normalizePlatform({ os, architecture, ...(variant !== undefined ? { variant } : {}) });
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

export function platformMatches(want: Platform, have: Platform): boolean {
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  return w.os === h.os && w.architecture === h.architecture && w.variant === h.variant;
}

/**
 * Picks the manifest for a platform from an index. Entries without a platform (attestation
 * manifests, "unknown/unknown") never match. A miss names what the index offers, as
 * `docker pull --platform` does.
 */
export function selectPlatformManifest(manifests: readonly Descriptor[], want: Platform, what: string): Descriptor {
  const match = manifests.find((m) => m.platform !== undefined && platformMatches(want, m.platform));
  if (match) return match;
  const available = manifests
    .filter((m) => m.platform !== undefined && m.platform.os !== 'unknown')
    .map((m) => formatPlatform(normalizePlatform(m.platform as Platform)));
  throw new ImageError(
    'D2P_IMAGE_PLATFORM',
    `${what}: no manifest for platform ${formatPlatform(normalizePlatform(want))}; available: ${available.length ? available.join(', ') : 'none'}`,
  );
}
