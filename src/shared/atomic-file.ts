import { open, rename, rm, type FileHandle } from "node:fs/promises";

/**
 * Writes a file so that readers see the old content or the new, never half: `write` fills `temp` (a
 * new file beside `path`, created exclusively), which is synced and renamed over `path`. On any
 * failure the temporary file is removed and the error rethrown. The transform profile and the file
 * state store write this way.
 */
export async function writeFileAtomically(path: string, temp: string, write: (file: FileHandle) => Promise<void>): Promise<void> {
  try {
    const file = await open(temp, "wx");
    try {
      await write(file);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (e) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw e;
  }
}
