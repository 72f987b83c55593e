// A minimal image rootfs for tests: Debian's static /usr/bin/busybox, a symlink per applet,
// /etc/passwd and /etc/group with a root and an unprivileged user, and the usual empty
// mountpoints. Built once per directory; tests use it as an overlay lower layer.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const BUSYBOX = '/usr/bin/busybox';

export const PASSWD = ['root:x:0:0:root:/root:/bin/sh', 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false', 'app:x:1000:1000:app:/home/app:/bin/sh'].join('\n') + '\n';
export const GROUP = ['root:x:0:', 'tty:x:5:', 'staff:x:50:app', 'nogroup:x:65534:', 'app:x:1000:'].join('\n') + '\n';

export function buildBusyboxRootfs(dir: string): string {
  if (!fs.existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: apt-get install busybox-static`);
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'home/app', 'var', 'usr/bin', 'sbin']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.chmodSync(path.join(dir, 'tmp'), 0o1777);
  fs.copyFileSync(BUSYBOX, path.join(dir, 'bin', 'busybox'));
  fs.chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const applet of applets) {
    if (applet === 'busybox') continue;
    fs.symlinkSync('busybox', path.join(dir, 'bin', applet));
  }
  fs.writeFileSync(path.join(dir, 'etc', 'passwd'), PASSWD);
  fs.writeFileSync(path.join(dir, 'etc', 'group'), GROUP);
  fs.chownSync(path.join(dir, 'home/app'), 1000, 1000);
  return dir;
}
