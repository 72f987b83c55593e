// The words `d2p get|describe|delete` accept for a kind, resolved the way kubectl resolves
// resource types: kind, plural, singular or short name, case-insensitive; "a,b" for
// several; "kind/name" to name objects directly; "all" for the kinds a Compose app is made of.
import { kindByName, KINDS, type KindInfo } from '../api/meta';
import { CliError } from './io';

/**
 * What `get all` shows. kubectl's "all" category leaves Events out (they are noise next to
 * workloads), and so do we; the order puts what users look at first on top.
 */
export const ALL_KINDS: readonly string[] = ['Service', 'Container', 'Image', 'Build', 'Network', 'Volume'];

/** One kind and the names asked for (empty: list every object of the kind). */
export interface KindTarget {
  info: KindInfo;
  names: string[];
}

export function resolveKind(word: string): KindInfo {
  const info = kindByName(word);
  if (!info) {
    // kubectl's wording, so scripts and habits carry over; the list helps a typo.
    const known = KINDS.map((k) => [k.plural, ...k.shortNames].join('|')).join(', ');
    throw new CliError(`the server doesn't have a resource type "${word}" (known: ${known})`, { code: 'D2P_UNKNOWN_KIND' });
  }
  return info;
}

/** "svc,ctr" or "all" → kinds, deduplicated in order. */
export function resolveKindList(word: string): KindInfo[] {
  const out: KindInfo[] = [];
  for (const part of word.split(',')) {
    if (part === '') throw new CliError(`empty resource type in "${word}"`, { code: 'D2P_UNKNOWN_KIND' });
    const infos = part.toLowerCase() === 'all' ? ALL_KINDS.map((k) => resolveKind(k)) : [resolveKind(part)];
    for (const info of infos) if (!out.includes(info)) out.push(info);
  }
  return out;
}

/**
 * Parses `get`'s positional arguments: either `KIND[,KIND…] [NAME…]` or only `kind/name`
 * words (kubectl refuses a mix: "there is no need to specify a resource type as a separate
 * argument when passing arguments in resource/name form").
 */
export function parseTargets(args: readonly string[], verb = 'get'): KindTarget[] {
  if (args.length === 0) {
    throw new CliError(`you must specify the type of resource to ${verb} (e.g. svc, ctr, img, net, vol, ev, all)`, {
      code: 'D2P_USAGE',
    });
  }
  if (args[0].includes('/')) return parseSlashTargets(args);
  if (args.some((a) => a.includes('/'))) {
    throw new CliError(
      `there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'd2p ${verb} svc/web' instead of 'd2p ${verb} svc svc/web')`,
      { code: 'D2P_USAGE' },
    );
  }
  const infos = resolveKindList(args[0]);
  const names = args.slice(1);
  if (names.length > 0 && infos.length > 1) {
    throw new CliError(`names can only be given with a single resource type, not "${args[0]}" (use kind/name)`, {
      code: 'D2P_USAGE',
    });
  }
  return infos.map((info) => ({ info, names: [...names] }));
}

function parseSlashTargets(args: readonly string[]): KindTarget[] {
  const byKind = new Map<KindInfo, string[]>();
  for (const arg of args) {
    const slash = arg.indexOf('/');
    if (slash <= 0 || slash === arg.length - 1 || arg.indexOf('/', slash + 1) !== -1) {
      throw new CliError(`arguments in resource/name form must have a single resource and name, not "${arg}"`, {
        code: 'D2P_USAGE',
      });
    }
    const info = resolveKind(arg.slice(0, slash));
    const names = byKind.get(info) ?? [];
    names.push(arg.slice(slash + 1));
    byKind.set(info, names);
  }
  return [...byKind].map(([info, names]) => ({ info, names }));
}

/** "service" for Service: the word kubectl prints before a name. */
export function kindWord(kind: string): string {
  return kindByName(kind)?.singular ?? kind.toLowerCase();
}

/** kubectl's `-o name` / apply output word: "service/web". */
export function qualifiedName(kind: string, name: string): string {
  return `${kindWord(kind)}/${name}`;
}
