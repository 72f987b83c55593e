// Extra CA certificates for registry TLS, loaded only when a registry client is made.
//
// Node reads NODE_EXTRA_CA_CERTS while it starts, before any of our code: on this kind
// of machine (a distribution's whole bundle in that variable) that is ~50 ms of every
// `d2p` command, most of which never speak TLS. bin/d2p therefore moves the variable to
// D2P_EXTRA_CA_CERTS before node starts, and the registry client adds the certificates
// here, with Node's own semantics: added to the bundled roots, and a file that cannot be
// read is a warning, not a failure (node's `Warning: Ignoring extra certs from …`).
import * as fs from 'node:fs';
import * as tls from 'node:tls';

export const EXTRA_CA_ENV = 'D2P_EXTRA_CA_CERTS';

export interface ExtraCaResult {
  /** Roots + extra certificates for tls `ca`; undefined when nothing extra is asked for. */
  ca?: string[];
  /** Why the file was not used, when it was not. */
  warning?: string;
}

export function extraCaCertificates(env: NodeJS.ProcessEnv = process.env): ExtraCaResult {
  const file = env[EXTRA_CA_ENV];
  if (file === undefined || file === '') return {};
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    return { warning: `ignoring extra certs from ${file} (${EXTRA_CA_ENV}): ${code}` };
  }
  return { ca: [...tls.rootCertificates, pem] };
}

let warned = false;

/** The `connect` options of a registry Agent: the extra CAs when configured, once-warned otherwise. */
export function registryTlsOptions(env: NodeJS.ProcessEnv = process.env): { ca?: string[] } {
  const { ca, warning } = extraCaCertificates(env);
  if (warning !== undefined && !warned) {
    warned = true;
    process.emitWarning(warning);
  }
  return ca === undefined ? {} : { ca };
}
