// The commit a watched directory is checked out at, when it is a git working tree.
import { execFile } from 'node:child_process';
import { GitOpsError } from './source';

const GIT_TIMEOUT_MS = 10_000;

/**
 * `git rev-parse --verify -q HEAD^{commit}` in `dir` (git-rev-parse(1)): the full commit id,
 * or undefined when the directory is not in a git repository, the repository has no commit
 * yet (--verify -q exits 1 silently), or git is not installed. Anything else (a repository
 * git refuses, e.g. "dubious ownership") is an error naming the directory.
 */
export function gitCommit(dir: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      ['-C', dir, 'rev-parse', '--verify', '-q', 'HEAD^{commit}'],
      // GIT_OPTIONAL_LOCKS=0: a read must never take the index lock a concurrent
      // `git checkout` in the same tree needs (git(1), "GIT_OPTIONAL_LOCKS").
      { timeout: GIT_TIMEOUT_MS, env: { ...process.env, GIT_OPTIONAL_LOCKS: '0', LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout.trim());
        const errno = (err as NodeJS.ErrnoException).code;
        if (errno === 'ENOENT') return resolve(undefined);
        const exit = (err as { code?: unknown }).code;
        if (exit === 1 && stderr.trim() === '') return resolve(undefined);
        if (exit === 128 && /not a git repository/i.test(stderr)) return resolve(undefined);
        reject(new GitOpsError(`git rev-parse HEAD in ${dir} failed: ${stderr.trim() || err.message}`, { code: 'D2P_GITOPS_GIT_FAILED', cause: err }));
      },
    );
  });
}
