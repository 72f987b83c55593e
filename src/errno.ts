// The errno name (ENOENT, EACCES…) a failed system call carries as Node reports it, for
// code that tells "not there" from a real failure. Every module of d2p asks it this way.

/** The `code` of a Node system error (or of the addon's errors, shaped like them); undefined for anything else. */
export function errnoOf(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}
