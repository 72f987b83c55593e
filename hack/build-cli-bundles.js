#!/usr/bin/env node
// Bundles each command of the CLI into one file (dist/cli/<word>.js), which bin/d2p runs
// instead of dist/src/cli/main.js when its line starts with that word. Node 20 loads each
// CommonJS module for ~0.2-0.4 ms (resolution, stat and realpath, package scope, compile)
// and resolves commander through its "exports" with the ESM resolver; `run` loaded 38
// modules. One file per command keeps each small: a bundle of the whole CLI (1.4 MB) took
// longer to parse than the modules it replaced (`run --rm`: 103 ms, against 84 ms).
// Interleaved in the sandbox, `run --rm IMG /bin/true`: 84.5 ms from dist, 73.4 ms bundled.
//
// Each bundle holds every module of ours its command can load, so none is ever loaded
// twice (once bundled, once from dist, which would break `instanceof`); packages other
// than commander (undici, yaml…) and the addon stay outside, loaded as usual. Modules that find
// files from their own location still do: the addon sits at the same depth from dist/cli
// as from dist/addon, and crd-schemas and package.json are looked for upwards. The
// validators generated beside validate.js are linked here too.
// bin/d2p keeps V8's code cache of each bundle in dist/cli/.v8-cache (made by its first
// run); a build starts dist/cli afresh, caches included.
// The daemon keeps running from dist: it starts once and runs for days.
// Run after tsc and build-validators (npm run build:ts); build output, never committed.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

const repo = path.resolve(__dirname, '..');
const cliDir = path.join(repo, 'dist', 'src', 'cli');
const outDir = path.join(repo, 'dist', 'cli');

/**
 * Commands left to dist: the daemon (see above), and those whose bundle holds so much that
 * parsing it cost what the modules it replaced did (up: 110 ms either way) — they pull
 * and build images, and take seconds anyway.
 */
const UNBUNDLED = ['daemon', 'up', 'build', 'image'];

/**
 * Loaded as usual: the addon, and every package but commander. Commander is bundled: every
 * command parses its line with it, and resolving it through its package's "exports" loads
 * node's ESM resolver (~1-2 ms); it requires no module of ours, so no copy can clash.
 */
const EXTERNAL = [
  '*.node',
  ...Object.keys(require(path.join(repo, 'package.json')).dependencies)
    .filter((name) => name !== 'commander')
    .flatMap((name) => [name, `${name}/*`]),
];

function entry(command) {
  // The loader main() is given: the one command this bundle holds, evaluated only when
  // main() runs it (not for --help or a refused option).
  return `'use strict';
const { runProgram } = require('./main');
exports.runProgram = () => runProgram({
  load: (name) => {
    if (name !== '${command}') throw new Error('this bundle of d2p holds the "${command}" command, not "' + name + '"');
    return require('./commands/${command}').${command}Command;
  },
});
`;
}

function main() {
  if (!fs.existsSync(path.join(cliDir, 'main.js'))) throw new Error('dist/src/cli/main.js not found: run tsc (npm run build:ts) first');
  const { COMMAND_NAMES, LIFECYCLE_ACTIONS } = require(path.join(cliDir, 'main.js'));
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  for (const command of COMMAND_NAMES.filter((c) => !UNBUNDLED.includes(c))) {
    // bin/d2p runs dist/cli/<first word>.js: lifecycle is no word of the command line, its
    // verbs are (links below).
    const outfile = path.join(outDir, command === 'lifecycle' ? '_lifecycle.js' : `${command}.js`);
    const result = esbuild.buildSync({
      stdin: { contents: entry(command), resolveDir: cliDir, sourcefile: `d2p-${command}-entry.js`, loader: 'js' },
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      outfile,
      external: EXTERNAL,
      metafile: true,
      // tsc's source maps sit beside the modules; a glob require would pick them up.
      loader: { '.map': 'empty' },
      // Less to parse at every start; names are kept (errors name their classes).
      minifyWhitespace: true,
      logLevel: 'warning',
    });
    const inputs = Object.keys(result.metafile.inputs);
    console.log(`wrote ${path.relative(repo, outfile)} (${inputs.length} modules, ${fs.statSync(outfile).size} bytes)`);
  }
  for (const action of LIFECYCLE_ACTIONS) fs.symlinkSync('_lifecycle.js', path.join(outDir, `${action}.js`));
  // validate.js requires validators.generated.js from beside itself; node follows the link,
  // so the generated code's own require("./formats") still resolves in dist/src/api.
  fs.symlinkSync('../src/api/validators.generated.js', path.join(outDir, 'validators.generated.js'));
}

main();
