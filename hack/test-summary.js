#!/usr/bin/env node
// Prints one closing line over every vitest run of `npm test` ("N passed, N failed,
// N skipped"), and under CI=true fails when anything was skipped: a skipped integration
// test proves nothing, so CI must not go green on one.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dir = path.join(__dirname, '..', '.d2p-tmp');
const reports = ['unit.json', 'integration.json'].map((f) => path.join(dir, f));
let passed = 0, failed = 0, skipped = 0;
const skippedNames = [];
for (const file of reports) {
  if (!fs.existsSync(file)) {
    console.error(`test-summary: ${file} is missing: did that test run start?`);
    process.exit(1);
  }
  const report = JSON.parse(fs.readFileSync(file, 'utf8'));
  for (const suite of report.testResults) {
    for (const t of suite.assertionResults) {
      if (t.status === 'passed') passed++;
      else if (t.status === 'failed') failed++;
      else { skipped++; skippedNames.push(`${path.relative(process.cwd(), suite.name)}: ${t.fullName}`); }
    }
  }
}
console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`);
if (skipped > 0 && process.env.CI === 'true') {
  console.error(`test-summary: under CI no test may be skipped:\n  ${skippedNames.join('\n  ')}`);
  process.exit(1);
}
process.exit(failed > 0 ? 1 : 0);
