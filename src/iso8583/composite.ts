/**
 * Positional composite fields (60, 61, 63, 53, the 6-byte header): fixed-width subfields laid end to
 * end in one digit or character string, which then travels under the parent field's encoding and
 * prefix. Trailing subfields are optional: the data may stop after any whole subfield (field 60
 * stops after 60.3 on management messages), but never in the middle of one.
 */
import { IsoError, IsoErrorCode } from './errors.js';
import type { SubfieldSpec } from './spec.js';

/** A composite value: subfield number → string, or a nested composite. */
export interface Subfields {
  [id: number]: string | Subfields;
}

/**
 * Splits `s` into subfields. Errors (LENGTH) carry the subfield path relative to the field and no
 * offset; the codec adds both.
 */
export function splitPositional(s: string, subs: readonly SubfieldSpec[]): Subfields {
  const out: Subfields = {};
  let pos = 0;
  for (let i = 0; i < subs.length && pos < s.length; i++) {
    const sub = subs[i]!;
    const left = s.length - pos;
    if (sub.variable) {
      if (left > sub.length) {
        throw new IsoError(IsoErrorCode.LENGTH, `length ${left} exceeds maximum ${sub.length}`, [
          String(sub.id),
        ]);
      }
    }
    const width = sub.variable ? left : sub.length;
    if (left < width) {
      throw new IsoError(IsoErrorCode.LENGTH, `data ends after ${left} of ${sub.length} units`, [
        String(sub.id),
      ]);
    }
    const part = s.slice(pos, pos + width);
    if (sub.subfields) {
      try {
        out[sub.id] = splitPositional(part, sub.subfields);
      } catch (e) {
        throw e instanceof IsoError ? e.within([String(sub.id)]) : e;
      }
    } else {
      out[sub.id] = part;
    }
    pos += width;
  }
  if (pos < s.length) {
    throw new IsoError(IsoErrorCode.LENGTH, `${s.length - pos} units follow the last subfield`);
  }
  return out;
}

function packError(detail: string, path: string[] = []): IsoError {
  return new IsoError(IsoErrorCode.PACK, detail, path);
}

/**
 * Joins a composite value back into one string. Subfields must be contiguous from the first: a later
 * subfield without an earlier one cannot be placed. Errors (PACK) carry the relative subfield path.
 */
export function joinPositional(value: unknown, subs: readonly SubfieldSpec[]): string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw packError('value must be an object of subfields');
  }
  const v = value as Record<string, unknown>;
  let s = '';
  let missing: SubfieldSpec | undefined;
  let known = 0;
  for (const sub of subs) {
    const part = v[sub.id];
    if (part === undefined) {
      missing ??= sub;
      continue;
    }
    known++;
    const path = [String(sub.id)];
    if (missing) throw packError(`present while subfield ${missing.id} is absent`, path);
    let text: string;
    if (sub.subfields) {
      try {
        text = joinPositional(part, sub.subfields);
      } catch (e) {
        throw e instanceof IsoError ? e.within(path) : e;
      }
    } else if (typeof part === 'string') {
      text = part;
    } else {
      throw packError('value must be a string', path);
    }
    if (text.length === 0) throw packError('empty; leave the subfield out instead', path);
    if (sub.variable ? text.length > sub.length : text.length !== sub.length) {
      throw packError(`length ${text.length}, ${sub.variable ? 'maximum' : 'expected'} ${sub.length}`, path);
    }
    s += text;
  }
  const keys = Object.keys(v);
  if (keys.length !== known) {
    // Either undefined values (fine) or keys that are not subfields (refused, or they would vanish).
    const ids = new Set(subs.map((x) => String(x.id)));
    const extra = keys.find((k) => v[k] !== undefined && !ids.has(k));
    if (extra !== undefined) throw packError('unknown subfield', [extra]);
  }
  return s;
}
