// The merged Compose model → d2p objects: a Network per network (plus `<project>_default`
// when a service uses it), a Volume per named volume, an Image per distinct image
// reference to pull, a Build per service to build, and a Service per enabled service.
// Every object lives in the project's namespace and carries Docker Compose's labels.
import { API_VERSION, type ApiObject } from '../api/meta';
import { imageObjectName } from '../api/object-names';
import { COMPOSE_LABELS, type Image, type PullPolicy } from '../api/types';
import { ComposeError, type KeyPath, type Pos, type WarningSink } from './errors';
import { get, isNull, mapNode, type MapNode } from './node';
import { activeProfiles, profileEnabled, type Env } from './project';
import { asMap, readStringList } from './read';
import { OBJECT_NAME, networkObject, readDeclarations, readFileDeclarations, volumeObject, type Declaration } from './resources';
import { serviceShape, topLevelShape, warnUnsupported } from './schema';
import { convertService, type ConvertedService, type ProjectContext } from './service';
import { resolveHostPath } from './volumes';

export interface ConvertOptions {
  project: string;
  projectDir: string;
  env: Env;
  home: string;
  profiles?: readonly string[];
  warnings: WarningSink;
  display(abs: string): string;
}

/** An object and the place in the Compose files it came from, for error messages. */
export interface Produced {
  object: ApiObject;
  pos: Pos;
  path: KeyPath;
}

export async function convertProject(root: MapNode, opts: ConvertOptions): Promise<Produced[]> {
  const servicesNode = get(root, 'services');
  const services = servicesNode === undefined || isNull(servicesNode) ? mapNode(root.pos) : asMap(servicesNode, ['services']);
  const active = activeProfiles(opts.profiles, opts.env);
  const allServices = new Map<string, { profiles: string[] }>();
  for (const entry of services.entries.values()) {
    const profiles = get(asMap(entry.value, ['services', entry.key]), 'profiles');
    allServices.set(entry.key, { profiles: profiles === undefined || isNull(profiles) ? [] : readStringList(profiles, ['services', entry.key, 'profiles']) });
  }
  const enabled = [...services.entries.values()].filter((e) => profileEnabled(allServices.get(e.key)?.profiles ?? [], active));
  const ctx = projectContext(root, opts, allServices, new Set(enabled.map((e) => e.key)));

  warnUnsupported({ ...root, entries: new Map([...root.entries].filter(([k]) => k !== 'services')) }, topLevelShape, [], opts.warnings);
  const converted: ConvertedService[] = [];
  for (const entry of enabled) {
    const service = asMap(entry.value, ['services', entry.key]);
    if (!OBJECT_NAME.test(entry.key)) {
      throw new ComposeError(`service name ${JSON.stringify(entry.key)} must start with a letter or digit to be a d2p object name`, { pos: entry.keyPos, path: ['services'] });
    }
    warnUnsupported(service, serviceShape, ['services', entry.key], opts.warnings);
    converted.push(await convertService(entry.key, service, entry.keyPos, ctx));
  }
  const produced = [
    ...networks(ctx, converted.some((c) => c.usesDefaultNetwork)),
    ...[...ctx.volumes.values()].map((d) => declared(volumeObject(d, opts.project, opts.warnings), d, 'volumes')),
    ...images(converted, opts.project),
    ...converted.flatMap((c): Produced[] => (c.build ? [{ object: c.build, pos: posOf(services, c), path: ['services', c.service.metadata.name, 'build'] }] : [])),
    ...converted.map((c): Produced => ({ object: c.service, pos: posOf(services, c), path: ['services', c.service.metadata.name] })),
  ];
  checkUniqueNames(produced);
  return produced;
}

function posOf(services: MapNode, c: ConvertedService): Pos {
  return services.entries.get(c.service.metadata.name)?.keyPos ?? services.pos;
}

function projectContext(root: MapNode, opts: ConvertOptions, allServices: ProjectContext['allServices'], enabledServices: Set<string>): ProjectContext {
  const networks = readDeclarations(root, 'networks', opts.project, opts.warnings);
  const resolve = (p: string) => resolveHostPath(p, opts.projectDir, opts.home);
  return {
    project: opts.project,
    projectDir: opts.projectDir,
    env: opts.env,
    home: opts.home,
    warnings: opts.warnings,
    display: opts.display,
    networks,
    defaultNetwork: networks.get('default') ?? { key: 'default', objectName: `${opts.project}_default`, external: false, keyPos: root.pos },
    volumes: readDeclarations(root, 'volumes', opts.project, opts.warnings),
    secrets: readFileDeclarations(root, 'secrets', resolve),
    configs: readFileDeclarations(root, 'configs', resolve),
    allServices,
    enabledServices,
  };
}

function declared(object: ApiObject, decl: Declaration, section: string): Produced {
  return { object, pos: decl.keyPos, path: [section, decl.key] };
}

/** `<project>_default` only when a service joins it; every other declared network always. */
function networks(ctx: ProjectContext, defaultUsed: boolean): Produced[] {
  const out: Produced[] = [];
  if (defaultUsed) out.push(declared(networkObject(ctx.defaultNetwork, ctx.project, ctx.warnings), ctx.defaultNetwork, 'networks'));
  for (const decl of ctx.networks.values()) {
    if (decl.key !== 'default') out.push(declared(networkObject(decl, ctx.project, ctx.warnings), decl, 'networks'));
  }
  return out;
}

const PULL_STRENGTH: Record<PullPolicy, number> = { Never: 0, IfNotPresent: 1, Always: 2 };

export { imageObjectName };

/**
 * One Image per distinct reference. A reference that a Build of this project tags is not
 * pulled: the services using it wait for the build, as with Compose's "build once, use
 * the image in several services".
 */
function images(converted: ConvertedService[], project: string): Produced[] {
  const built = new Set(converted.flatMap((c) => c.build?.spec?.tags ?? []));
  const byRef = new Map<string, { pullPolicy: PullPolicy; pos: Pos; service: string }>();
  for (const c of converted) {
    if (!c.image) continue;
    if (built.has(c.image.ref)) {
      if (c.service.spec) c.service.spec.template.spec.imagePullPolicy = 'Never';
      continue;
    }
    const seen = byRef.get(c.image.ref);
    // Two services may ask differently for one image: the most eager policy wins.
    if (!seen || PULL_STRENGTH[c.image.pullPolicy] > PULL_STRENGTH[seen.pullPolicy]) {
      byRef.set(c.image.ref, { pullPolicy: c.image.pullPolicy, pos: seen?.pos ?? c.image.pos, service: seen?.service ?? c.service.metadata.name });
    }
  }
  return [...byRef].map(([ref, { pullPolicy, pos, service }]) => {
    const name = imageObjectName(ref);
    if (!OBJECT_NAME.test(name)) throw new ComposeError(`image ${JSON.stringify(ref)} does not give a valid object name`, { pos, path: ['services', service, 'image'] });
    const object: Image = {
      apiVersion: API_VERSION,
      kind: 'Image',
      metadata: { name, namespace: project, labels: { [COMPOSE_LABELS.project]: project } },
      spec: { ref, pullPolicy },
    };
    return { object, pos, path: ['services', service, 'image'] };
  });
}

function checkUniqueNames(produced: Produced[]): void {
  const seen = new Map<string, Produced>();
  for (const p of produced) {
    const key = `${p.object.kind}/${p.object.metadata.name}`;
    const first = seen.get(key);
    if (first) {
      throw new ComposeError(`${p.object.kind.toLowerCase()} name ${JSON.stringify(p.object.metadata.name)} is also produced by ${first.pos.file}:${first.pos.line}:${first.pos.column}`, { pos: p.pos, path: p.path });
    }
    seen.set(key, p);
  }
}
