// Names of objects that d2p derives from something else, shared by every producer of
// those objects (Compose conversion, `d2p run`), in a module light enough for any
// command to import: run must not load the Compose parser (and yaml) to name an Image.

/** The Image object of a reference: "docker.io/library/busybox:1.36" → "docker.io-library-busybox-1.36". */
export function imageObjectName(ref: string): string {
  return ref.toLowerCase().replace(/[/:@]/g, '-');
}
