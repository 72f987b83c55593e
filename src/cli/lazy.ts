// Modules that only some paths of a command need are loaded when first used, not with the
// command: each call site says what it keeps off the start-up of the others.

/** vitest runs the TypeScript sources; bin/d2p runs them compiled to CommonJS (dist/). */
const RUNS_FROM_SOURCE = __filename.endsWith('.ts');

/**
 * A function loading a module on its first call: `required` (a require()) in the compiled
 * CLI, where an import() would first start node's ESM loader (~8 ms); `imported` (an
 * import() of the same module) under vitest, whose .ts modules require() cannot find.
 */
export function lazy<T>(required: () => NoInfer<T>, imported: () => Promise<T>): () => Promise<T> {
  return RUNS_FROM_SOURCE ? imported : async () => required();
}
