// Resolves a Docker `user` string ("uid", "uid:gid", "name", "name:group") against the
// image's /etc/passwd and /etc/group, as Docker does (moby/sys/user GetExecUser): the
// primary gid comes from passwd, supplementary groups from every group listing the user.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home?: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const ID = /^\d+$/;

/**
 * Reads etc/<name> from the first root dir (topmost layer first) that has it. The file is
 * read without following symlinks: a layer may not point us at a host file.
 */
export function readEtcFile(roots: string[], name: 'passwd' | 'group'): string | undefined {
  for (const root of roots) {
    const file = path.join(root, 'etc', name);
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    if (!stat.isFile()) throw new Error(`${file} is not a regular file; refusing to read it for user lookup`);
    return fs.readFileSync(file, 'utf8');
  }
  return undefined;
}

function parsePasswd(text: string | undefined): PasswdEntry[] {
  return (text ?? '')
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 7 && ID.test(f[2]) && ID.test(f[3]))
    .map((f) => ({ name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] }));
}

function parseGroup(text: string | undefined): GroupEntry[] {
  return (text ?? '')
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 4 && ID.test(f[2]))
    .map((f) => ({ name: f[0], gid: Number(f[2]), members: f[3].split(',').filter(Boolean) }));
}

export function resolveUser(spec: string | undefined, roots: string[]): ResolvedUser {
  const [userPart, groupPart] = (spec ?? '').split(':', 2);
  const passwd = parsePasswd(readEtcFile(roots, 'passwd'));
  const groups = parseGroup(readEtcFile(roots, 'group'));
  const wanted = userPart === '' ? '0' : userPart;
  const entry = ID.test(wanted) ? passwd.find((p) => p.uid === Number(wanted)) : passwd.find((p) => p.name === wanted);
  if (!entry && !ID.test(wanted)) throw new Error(`unable to find user ${wanted}: no matching entries in passwd file`);
  const uid = entry ? entry.uid : Number(wanted);
  let gid = entry ? entry.gid : 0;
  if (groupPart !== undefined && groupPart !== '') {
    const group = ID.test(groupPart) ? { gid: Number(groupPart) } : groups.find((g) => g.name === groupPart);
    if (!group) throw new Error(`unable to find group ${groupPart}: no matching entries in group file`);
    gid = group.gid;
  }
  const additionalGids = entry
    ? groups.filter((g) => g.members.includes(entry.name) && g.gid !== gid).map((g) => g.gid)
    : [];
  return { uid, gid, additionalGids, home: entry?.home };
}
