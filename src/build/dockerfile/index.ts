// The Dockerfile library: parse, then resolve the stages a target needs. A builder runs
// the ResolvedStages' instructions; nothing here touches the file system or the network.
export { DockerfileError } from './errors';
export { parseDockerfile, type ParseOptions } from './parse';
export { resolveStages, hostPlatform, platformArgs, normalizeExposedPort, PROXY_ARGS, type ResolveOptions } from './resolve';
export { processWord, processWords, type Lookup, type LexOptions } from './shell-lex';
export { DEFAULT_SHELL } from './instructions';
export type * from './types';
