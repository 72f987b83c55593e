// A Container's runtime id, in a module of its own: the CLI's log readers (run, logs, up)
// need the rule without what container-config.ts loads with it.
import type * as Crypto from 'node:crypto';

// The runtime's id rule (src/runtime/runtime.ts ID_PATTERN).
const RUNTIME_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/** Runtime id of a Container: "<namespace>_<name>", or a hashed form when that is too long. */
export function containerId(namespace: string, name: string): string {
  const plain = `${namespace}_${name}`;
  if (RUNTIME_ID.test(plain)) return plain;
  // Loaded only for such a name: node:crypto is ~2 ms of every CLI start that reads logs.
  const { createHash } = require('node:crypto') as typeof Crypto;
  // "_" cannot start a name, so "<ns>_<name>" stays unambiguous; the hash keeps long names unique.
  const hash = createHash('sha256').update(`${namespace}/${name}`).digest('hex').slice(0, 16);
  return `${plain.slice(0, 128 - hash.length - 1)}-${hash}`;
}
