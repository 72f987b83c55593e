// d2p convert -f compose.yml…: the manifests a Compose application becomes, as a
// multi-document YAML stream (`---` between objects), ready for `d2p apply -f -` or a
// GitOps repository. Warnings (Compose keys d2p does not honour) go to stderr.
import type { CommandContext } from '../context';
import { CliError } from '../io';
import { loadObjects, type SourceOptions } from '../load-objects';
import { listOf, toJson, toYaml } from '../printers';

export interface ConvertOptions extends SourceOptions {
  output?: string;
}

export async function convertCommand(opts: ConvertOptions, ctx: CommandContext): Promise<number> {
  const output = opts.output ?? 'yaml';
  if (output !== 'yaml' && output !== 'json') {
    throw new CliError(`-o must be "yaml" or "json", not "${output}"`, { code: 'D2P_USAGE' });
  }
  // Validated, so what convert prints is something apply accepts.
  const objects = (await loadObjects(opts, ctx.io, { validate: true })).map((m) => m.object);
  if (output === 'json') ctx.io.stdout.write(toJson(listOf(objects)));
  else ctx.io.stdout.write(objects.map((o) => toYaml(o)).join('---\n'));
  return 0;
}
