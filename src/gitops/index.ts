// GitOps (issue 7): a directory of Compose files and manifests that d2p keeps applied.
export { startGitOps, type GitOps, type GitOpsOptions } from './watcher';
export { syncSource, formatSyncLine, shortRevision, type SyncReport, type SyncInput, type FileError } from './sync';
export { readDirectory, type DirectoryRead, type FileRead } from './read-dir';
export { SET_KINDS, markForSource, objectDigest, pruneCandidates } from './apply-set';
export { Coalescer, type CoalescerOptions } from './coalescer';
export { gitCommit } from './git';
export {
  DEFAULT_INTERVAL,
  GitOpsError,
  SOURCE_DIGEST_ANNOTATION,
  SOURCE_FILE_ANNOTATION,
  SOURCE_LABEL,
  SOURCE_NAMESPACE,
  checkSourceName,
  sourceNameFor,
} from './source';
export { withGitOps } from './daemon';
