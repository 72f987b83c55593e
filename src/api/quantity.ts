// Byte sizes as Compose writes them (mem_limit, shm_size, tmpfs size: "512m", "1g",
// "1.5GB", "100k"). Compose hands these to docker/go-units RAMInBytes, whose multipliers
// are binary whatever the spelling: k = KB = KiB = 1024 (github.com/docker/go-units,
// size.go: sizeRegex and binaryMap). We follow it so a file means what it meant under Docker.

export class InvalidByteSizeError extends Error {
  readonly code = 'D2P_INVALID_BYTE_SIZE';
  readonly input: string | number;
  readonly why: string;

  constructor(input: string | number, why: string) {
    super(`invalid byte size ${JSON.stringify(input)}: ${why}`);
    this.name = 'InvalidByteSizeError';
    this.input = input;
    this.why = why;
  }
}

const BYTES_PER_PREFIX: Readonly<Record<string, number>> = {
  '': 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

// go-units: ^(\d+(\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$ — its "(\.\d+)*" would admit
// "1.2.3", which its ParseFloat then rejects; we reject it in the pattern instead.
const SIZE = /^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$/;

/** Bytes of a Compose size; a number, or a string of digits alone, is already bytes. */
export function parseBytes(s: string | number): number {
  if (typeof s === 'number') return checkedByteCount(s, s);
  const match = SIZE.exec(s.trim());
  if (!match) {
    throw new InvalidByteSizeError(s, 'expected a number with an optional unit b, k, m, g, t or p (e.g. "512m", "1.5GB")');
  }
  const [, amount, prefix = ''] = match;
  // Truncation toward zero, as go-units' int64(size * multiplier).
  return checkedByteCount(s, Math.trunc(Number(amount) * BYTES_PER_PREFIX[prefix.toLowerCase()]));
}

function checkedByteCount(input: string | number, bytes: number): number {
  if (!Number.isInteger(bytes)) throw new InvalidByteSizeError(input, 'a plain number of bytes must be a whole number');
  if (bytes < 0) throw new InvalidByteSizeError(input, 'must not be negative');
  if (!Number.isSafeInteger(bytes)) throw new InvalidByteSizeError(input, 'too large');
  return bytes;
}
