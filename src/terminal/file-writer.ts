/**
 * Atomic rewrites of one terminal file (state, batch), one at a time: a later write never lands
 * before an earlier one, and a failed write reaches only its own caller.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../crypto/sealed.js';

export class SerialFileWriter {
  readonly path: string;
  #chain: Promise<void> = Promise.resolve();

  constructor(path: string) {
    this.path = path;
  }

  /** Writes `text` (fsync, rename) after the writes before it; `failed` maps an error for the caller. */
  write(text: string, failed: (e: unknown) => Error): Promise<void> {
    const next = this.#chain.then(async () => {
      await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
      await writeFileAtomic(this.path, text);
    });
    this.#chain = next.catch(() => undefined);
    return next.catch((e: unknown) => {
      throw failed(e);
    });
  }
}
