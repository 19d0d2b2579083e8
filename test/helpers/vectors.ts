import { readFileSync } from 'node:fs';

/**
 * Loads a vector file from test/vectors. Every file has `source` (where the values were published)
 * and `vectors` (the cases); a file without a source is rejected so provenance cannot be dropped.
 */
export function loadVectors<T>(name: string): { source: string; vectors: T[] } {
  const url = new URL(`../vectors/${name}`, import.meta.url);
  const parsed = JSON.parse(readFileSync(url, 'utf8')) as { source?: unknown; vectors?: unknown };
  if (typeof parsed.source !== 'string' || parsed.source.length === 0) {
    throw new Error(`${name}: vector file has no "source"`);
  }
  if (!Array.isArray(parsed.vectors) || parsed.vectors.length === 0) {
    throw new Error(`${name}: vector file has no "vectors"`);
  }
  return parsed as { source: string; vectors: T[] };
}
