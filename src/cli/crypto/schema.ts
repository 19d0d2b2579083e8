/**
 * The operation table's vocabulary. Each `poskey crypto` operation declares its options once, as
 * data; commander flags and `batch` keys are both derived from that declaration, and both go
 * through `parseArgs`, so a flag and its batch key can never disagree on name or validation.
 *
 * Option keys are camelCase (`keyType`); the flag is their kebab-case form (`--key-type`).
 */
import { fromHex, zeroize } from '../../crypto/bytes.js';
import { PoskeyError } from '../../errors.js';

/** A missing, unknown or invalid option; `field` is the flag (`--key`). */
export const ERR_OPTION = 'POSKEY_ERR_CLI_OPTION';

interface BaseOption {
  description: string;
  required?: boolean;
  repeated?: boolean;
}
export interface HexOption extends BaseOption {
  type: 'hex';
}
export interface EnumOption<V extends string = string> extends BaseOption {
  type: 'enum';
  values: readonly V[];
  default?: V;
}
export interface IntOption extends BaseOption {
  type: 'int';
  min: number;
  max: number;
}
export interface TextOption extends BaseOption {
  type: 'text';
  /** Shown in help as `<name>`. */
  valueName: string;
  pattern?: RegExp;
  patternHint?: string;
}
export interface FlagOption extends BaseOption {
  type: 'flag';
}
export type OptionSpec = HexOption | EnumOption | IntOption | TextOption | FlagOption;
export type OptionsSchema = Record<string, OptionSpec>;

type ValueOf<O> = O extends HexOption
  ? Buffer
  : O extends EnumOption<infer V>
    ? V
    : O extends IntOption
      ? number
      : O extends FlagOption
        ? boolean
        : string;

/** The parsed, validated arguments an operation's `run` receives. */
export type Args<S extends OptionsSchema> = {
  [K in keyof S]: S[K] extends { repeated: true }
    ? ValueOf<S[K]>[]
    : S[K] extends { required: true }
      ? ValueOf<S[K]>
      : S[K] extends FlagOption
        ? boolean
        : S[K] extends { default: string }
          ? ValueOf<S[K]>
          : ValueOf<S[K]> | undefined;
};

/** A result object: printed as `key: value` lines, or as one JSON object with --json / in batch. */
export type OpResult = Record<string, unknown>;

/** One `poskey crypto` operation. `path` is the subcommand path, e.g. `pinblock encrypt`. */
export interface Operation<S extends OptionsSchema = OptionsSchema> {
  path: string;
  summary: string;
  options: S;
  /** A command line (without `poskey crypto`), shown in --help and in the docs. */
  example: string;
  /**
   * Field names the crypto modules use in their errors, mapped to this operation's flags
   * (`{ bdk: '--bdk' }`), so an error raised deep in a module still names what the user typed.
   * A module field `components[1]` maps through its prefix `components`.
   */
  fields?: Record<string, string>;
  run(args: Args<S>): OpResult;
  /** Reshapes a result for the text form only (e.g. adds code descriptions); JSON is never reshaped. */
  text?(result: OpResult): OpResult;
}

/** Declares an operation with its argument types inferred from the schema. */
export function defineOp<const S extends OptionsSchema>(op: Operation<S>): Operation {
  return op as unknown as Operation;
}

/** Per-option extras; kept as literal types so `required: true` makes the argument non-optional. */
interface Extra {
  required?: boolean;
  repeated?: boolean;
}

export function hex<const E extends Extra = Record<never, never>>(
  description: string,
  extra?: E,
): HexOption & E {
  return { type: 'hex', description, ...extra } as HexOption & E;
}

export function oneOf<const V extends string, const E extends Extra & { default?: V } = Record<never, never>>(
  values: readonly V[],
  description: string,
  extra?: E,
): EnumOption<V> & E {
  return { type: 'enum', values, description, ...extra } as EnumOption<V> & E;
}

export function int<const E extends Extra = Record<never, never>>(
  description: string,
  min: number,
  max: number,
  extra?: E,
): IntOption & E {
  return { type: 'int', description, min, max, ...extra } as IntOption & E;
}

export function flag(description: string): FlagOption {
  return { type: 'flag', description };
}

export function text<
  const E extends Extra & { pattern?: RegExp; patternHint?: string } = Record<never, never>,
>(valueName: string, description: string, extra?: E): TextOption & E {
  return { type: 'text', valueName, description, ...extra } as TextOption & E;
}

/** `keyType` → `key-type`. */
export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function flagOf(name: string): string {
  return `--${kebab(name)}`;
}

function optionError(name: string, reason: string): PoskeyError {
  return new PoskeyError(ERR_OPTION, reason, { field: flagOf(name) });
}

/**
 * A rejected enum value is quoted back only when it cannot be secret: up to 3 characters, or a short
 * word with a non-hex letter. A key or PIN typed into the wrong flag is never echoed.
 */
const ECHOABLE = /^(?:.{1,3}|(?=.*[g-zG-Z])[\w.-]{1,12})$/;

function parseOne(name: string, spec: OptionSpec, value: unknown): unknown {
  const field = flagOf(name);
  switch (spec.type) {
    case 'hex':
      if (typeof value !== 'string') throw optionError(name, 'must be a hex string');
      return fromHex(value.replace(/\s+/g, ''), field);
    case 'enum': {
      const v = typeof value === 'number' ? String(value) : value;
      if (typeof v !== 'string' || !(spec.values as readonly string[]).includes(v)) {
        const got = typeof v === 'string' && ECHOABLE.test(v) ? ` (got '${v}')` : '';
        throw optionError(name, `must be one of ${spec.values.join(', ')}${got}`);
      }
      return v;
    }
    case 'int': {
      const v =
        typeof value === 'number'
          ? value
          : typeof value === 'string' && /^\d+$/.test(value)
            ? Number(value)
            : NaN;
      if (!Number.isInteger(v) || v < spec.min || v > spec.max) {
        throw optionError(name, `must be an integer from ${spec.min} to ${spec.max}`);
      }
      return v;
    }
    case 'flag':
      if (typeof value !== 'boolean') throw optionError(name, 'must be true or false');
      return value;
    case 'text':
      if (typeof value !== 'string' || value.length === 0)
        throw optionError(name, 'must be a non-empty string');
      if (spec.pattern && !spec.pattern.test(value)) {
        throw optionError(name, spec.patternHint ?? `does not match ${spec.pattern}`);
      }
      return value;
  }
}

/**
 * Validates raw option values (from commander or from a batch line) against a schema: unknown
 * keys, missing required options, bad hex, enum values outside the list and out-of-range
 * integers all become POSKEY_ERR_CLI_OPTION (POSKEY_ERR_HEX for malformed hex) naming the flag.
 */
export function parseArgs(schema: OptionsSchema, raw: Record<string, unknown>): Record<string, unknown> {
  for (const key of Object.keys(raw)) {
    if (!Object.hasOwn(schema, key)) throw optionError(key, 'unknown option');
  }
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) {
    const value = raw[name];
    if (value === undefined || value === null) {
      if (spec.required) throw optionError(name, 'is required');
      out[name] = spec.repeated
        ? []
        : spec.type === 'flag'
          ? false
          : spec.type === 'enum'
            ? spec.default
            : undefined;
      continue;
    }
    if (spec.repeated) {
      const list = Array.isArray(value) ? value : [value];
      if (spec.required && list.length === 0) throw optionError(name, 'is required');
      out[name] = list.map((v) => parseOne(name, spec, v));
    } else {
      out[name] = parseOne(name, spec, value);
    }
  }
  return out;
}

/** Rejects an option that only makes sense alongside another (e.g. --iv without --mode cbc). */
export function assertAllowed(name: string, allowed: boolean, reason: string): void {
  if (!allowed) throw optionError(name, reason);
}

/** Requires an option whose need depends on another one (e.g. --pan for PIN block format 0). */
export function requireOption<T>(name: string, value: T | undefined, reason: string): T {
  if (value === undefined) throw optionError(name, `is required ${reason}`);
  return value;
}

function renameField(e: unknown, fields: Record<string, string> | undefined): unknown {
  if (!(e instanceof PoskeyError) || e.field === undefined || fields === undefined) return e;
  const match = /^([A-Za-z]+)(.*)$/.exec(e.field);
  const flag = match ? fields[match[1]!] : undefined;
  if (flag === undefined) return e;
  // `components[1]` → `--component #2`: users count repeated flags from one.
  const index = /^\[(\d+)\]$/.exec(match![2]!);
  const suffix = index ? ` #${Number(index[1]) + 1}` : match![2]!;
  const Class = e.constructor as typeof PoskeyError;
  return new Class(e.code, e.reason, { field: `${flag}${suffix}`, cause: e });
}

/**
 * Validates `raw` against the operation's schema and runs it; the one entry point shared by the
 * generated commands and `batch`. Module errors have their field renamed to the flag, and the
 * parsed byte arguments are zeroised afterwards.
 */
export function runOperation(op: Operation, raw: Record<string, unknown>): OpResult {
  const args = parseArgs(op.options, raw);
  try {
    return op.run(args as Args<OptionsSchema>);
  } catch (e) {
    throw renameField(e, op.fields);
  } finally {
    // Hex arguments are keys, PIN blocks and components: wipe them once the result is text.
    for (const v of Object.values(args)) zeroize(...(Array.isArray(v) ? v : [v]).filter(isBuffer));
  }
}

function isBuffer(v: unknown): v is Buffer {
  return Buffer.isBuffer(v);
}
