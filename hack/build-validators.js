#!/usr/bin/env node
// Precompiles the JSON Schema validators of crd-schemas/ into plain JavaScript
// (ajv standalone code, https://ajv.js.org/standalone.html), so that no d2p process pays
// ajv's ~200 ms schema compilation. Run after tsc: it uses the compiled validate.js, and
// writes dist/src/api/validators.generated.js next to it, where validate.js looks.
// Generated code is build output, never committed.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const repo = path.resolve(__dirname, '..');
const validateModule = path.join(repo, 'dist', 'src', 'api', 'validate.js');

function main() {
  if (!fs.existsSync(validateModule)) {
    throw new Error(`${path.relative(repo, validateModule)} not found: run tsc (npm run build:ts) first`);
  }
  const { generateValidatorModule, GENERATED_VALIDATORS_FILE } = require(validateModule);
  const code = generateValidatorModule();
  writeAtomically(GENERATED_VALIDATORS_FILE, code);
  console.log(`wrote ${path.relative(repo, GENERATED_VALIDATORS_FILE)} (${code.length} bytes)`);
}

/** Temp file then rename, so a process starting meanwhile never requires half a module. */
function writeAtomically(file, text) {
  const temp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temp, text);
  fs.renameSync(temp, file);
}

main();
