// d2p version: the CLI's version, the API version it speaks, and the Node that runs it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { API_VERSION } from '../../api/meta';
import type { CommandContext } from '../context';
import { CliError } from '../io';

export async function versionCommand(_opts: unknown, ctx: CommandContext): Promise<number> {
  ctx.io.stdout.write(`d2p version ${packageVersion()} (API ${API_VERSION}, node ${process.version})\n`);
  return 0;
}

/** The version in d2p's package.json, found from this file whether it runs from src/ or dist/. */
export function packageVersion(): string {
  for (let dir = __dirname; path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    const pkg = JSON.parse(text) as { name?: string; version?: string };
    if (pkg.name === 'd2p' && pkg.version) return pkg.version;
  }
  throw new CliError(`no d2p package.json above ${__dirname}`, { code: 'D2P_NO_PACKAGE_JSON' });
}
