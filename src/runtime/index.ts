// The runtime: the only way the Container controller reaches processes, mounts and cgroups.
export { Runtime, type RuntimeOptions } from './runtime';
export * from './errors';
export * from './types';
export { CgroupManager, detectCgroupVersion, type CgroupVersion } from './cgroups';
export { buildOciConfig, parseLogSize, resolveArgs, mergeEnv, resolveCapabilities, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS, type OciConfig } from './oci';
export { resolveUser } from './user';
export { parseDuration } from '../api/duration';
export { signalNumber, signalName } from './signals';
export { attach, attachSocketPath, AttachError, type AttachSession } from './attach';
