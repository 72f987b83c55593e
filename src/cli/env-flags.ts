// docker's -e flags, for run and exec.
import { CliError } from './io';

/** `-e K=V`, or `-e K` to take K from our environment (dropped when unset), as docker does. */
export function parseEnvFlags(flags: readonly string[], env: Record<string, string | undefined> = process.env): { name: string; value: string }[] {
  const out: { name: string; value: string }[] = [];
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    const name = eq < 0 ? flag : flag.slice(0, eq);
    if (name === '' || /\s/.test(name)) throw new CliError(`-e ${JSON.stringify(flag)}: expected NAME=VALUE or NAME`, { code: 'D2P_USAGE' });
    if (eq >= 0) out.push({ name, value: flag.slice(eq + 1) });
    else if (env[name] !== undefined) out.push({ name, value: env[name]! });
  }
  return out;
}
