// Integration tests that create namespaces, mounts and cgroups must run inside hack/sandbox
// (DESIGN.md §8). Called at the top of such a test file: outside the sandbox it fails
// loudly instead of touching the host, and it never turns into a silent skip.
export function requireSandbox(what: string): void {
  if (process.env.D2P_SANDBOX !== '1') {
    throw new Error(
      `${what}: these tests create real namespaces, mounts and cgroups and must run inside the sandbox: ` +
        `hack/sandbox npx vitest run --project integration <file> (D2P_SANDBOX=1 is not set)`,
    );
  }
  if (process.getuid?.() !== 0) throw new Error(`${what}: needs root (running as uid ${process.getuid?.()})`);
}
