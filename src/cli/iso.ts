/**
 * `poskey iso decode|encode`: ISO 8583 frames on the command line. Decode shows the frame layers,
 * the transaction, and every field with its name, subfields and TLV tags, with card data masked
 * unless --unmask; encode builds a frame from a message in JSON (the shape decode --json prints).
 * The commands only parse options, call src/iso8583 and print.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { fromHex, toHex } from '../crypto/bytes.js';
import { PoskeyError } from '../errors.js';
import { describeEnvelope, describeMessage, formatDescription } from '../iso8583/describe.js';
import {
  buildEnvelope,
  detectFraming,
  type Envelope,
  encodeFrame,
  FRAMING_PROFILES,
  type FramingProfile,
  lengthPrefix,
  parseEnvelope,
  parseFrame,
  parseTerminalHeader,
  parseTpdu,
  setProcessingRequirement,
  TERMINAL_PROFILE,
  type TerminalHeader,
  type Tpdu,
} from '../iso8583/framing.js';
import { DIALECT_NAMES, type Dialect, getDialect, type IsoMessage, pack, unpack } from '../iso8583/index.js';
import { action, printJson } from './output.js';

/** Bad option values (framing name, TPDU/header hex of the wrong size). */
export const ERR_OPTION = 'POSKEY_ERR_CLI_OPTION';
/** Input that cannot be read or is not what the command expects (no input, bad JSON). */
export const ERR_INPUT = 'POSKEY_ERR_CLI_INPUT';
/** encode was given a masked message (decode --json without --unmask). */
export const ERR_MASKED = 'POSKEY_ERR_CLI_MASKED';

const DECODE_FRAMINGS = ['auto', 'terminal', 'network', 'cups', 'none'] as const;
const ENCODE_FRAMINGS = ['terminal', 'network', 'cups', 'none'] as const;
type Framing = (typeof DECODE_FRAMINGS)[number];

const DEFAULT_TPDU = '6000000000';
const DEFAULT_HEADER = '603100000000';

function optionError(flag: string, reason: string): PoskeyError {
  return new PoskeyError(ERR_OPTION, reason, { field: flag });
}

function inputError(reason: string, field = 'input', cause?: unknown): PoskeyError {
  return new PoskeyError(ERR_INPUT, reason, { field, cause });
}

// --- input --------------------------------------------------------------------------------------

/** Hex as people paste it: spaces, newlines, colons and a 0x prefix are ignored. */
function cleanHex(text: string): string {
  return text.replace(/^\s*0x/i, '').replace(/[\s:]/g, '');
}

const HEX_TEXT = /^[0-9A-Fa-f\s:]*$/;

function readPath(path: string): Buffer {
  try {
    return readFileSync(path === '-' ? 0 : path);
  } catch (e) {
    throw inputError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, '--file', e);
  }
}

/** Bytes from HEX arguments, --file (binary or hex text, detected) or stdin. */
function readFrameInput(hexArgs: string[], opts: { file?: string; binary?: boolean }): Buffer {
  if (hexArgs.length > 0 && opts.file !== undefined)
    throw optionError('--file', 'give either HEX or --file, not both');
  if (hexArgs.length > 0) return fromHex(cleanHex(hexArgs.join('')), 'HEX');
  if (opts.file === undefined && process.stdin.isTTY) {
    throw inputError('no input: give HEX, --file PATH, or pipe the frame on stdin');
  }
  const raw = readPath(opts.file ?? '-');
  const field = opts.file === undefined ? 'stdin' : '--file';
  if (raw.length === 0) throw inputError('input is empty', field);
  const text = raw.toString('latin1');
  if (!opts.binary && HEX_TEXT.test(text)) return fromHex(cleanHex(text), field);
  return raw;
}

// --- decode -------------------------------------------------------------------------------------

interface DecodeOptions {
  file?: string;
  binary?: boolean;
  dialect: string;
  framing: Framing;
  unmask?: boolean;
  json?: boolean;
}

/** Chooses the profile and whether the bytes start with the length prefix. */
function pickFraming(
  bytes: Buffer,
  framing: Framing,
): { profile: FramingProfile | undefined; prefixed: boolean } {
  if (framing === 'none') return { profile: undefined, prefixed: false };
  if (framing === 'auto') return detectFraming(bytes);
  const profile = FRAMING_PROFILES[framing]!;
  // A terminal payload starts with the TPDU (0x60); a 2-byte length never does (it would exceed 24 KiB).
  return { profile, prefixed: framing !== 'terminal' || bytes[0] !== 0x60 };
}

function decodeCommand(hexArgs: string[], opts: DecodeOptions): void {
  const dialect = getDialect(opts.dialect);
  const bytes = readFrameInput(hexArgs, opts);
  const { profile, prefixed } = pickFraming(bytes, opts.framing);
  let envelope: Envelope = { body: bytes };
  let announced: number | undefined;
  if (profile) {
    envelope = prefixed ? parseFrame(bytes, profile) : parseEnvelope(bytes, profile);
    if (prefixed) announced = bytes.length - lengthPrefix(profile.length)!.size;
  }
  const message = unpack(dialect, envelope.body);
  const described = describeMessage(dialect, message, { unmask: opts.unmask === true });
  const frame = describeEnvelope(envelope, profile, announced);
  if (opts.json) printJson({ frame, ...described });
  else process.stdout.write(`${formatDescription(described, frame)}\n`);
}

// --- encode -------------------------------------------------------------------------------------

interface EncodeOptions {
  dialect?: string;
  json: string;
  framing?: (typeof ENCODE_FRAMINGS)[number];
  tpdu?: string;
  header?: string;
  processingRequirement?: string;
  lri?: string;
  out?: string;
}

/** The frame layers decode --json printed, as far as encode can reuse them. */
interface FrameJson {
  framing?: string;
  tpdu?: { destination?: string; source?: string };
  header?: { hex?: string };
  lri?: string;
  rawHeader?: string;
}

interface EncodeInput {
  message: IsoMessage;
  dialect?: string;
  frame?: FrameJson;
}

function readEncodeInput(path: string): EncodeInput {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readPath(path).toString('utf8'));
  } catch (e) {
    if (e instanceof PoskeyError) throw e;
    throw inputError(`${path} is not valid JSON`, '--json', e);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw inputError('expected a JSON object: a message, or the output of decode --json', '--json');
  }
  const obj = parsed as Record<string, unknown>;
  if (obj.masked === true) {
    throw new PoskeyError(
      ERR_MASKED,
      'this JSON was decoded with card data masked; decode again with --unmask',
      {
        field: '--json',
      },
    );
  }
  if (typeof obj.message === 'object' && obj.message !== null) {
    return {
      message: obj.message as IsoMessage,
      ...(typeof obj.dialect === 'string' ? { dialect: obj.dialect } : {}),
      ...(typeof obj.frame === 'object' && obj.frame !== null ? { frame: obj.frame as FrameJson } : {}),
    };
  }
  return { message: obj as unknown as IsoMessage };
}

function hexOption(value: string, bytes: number, flag: string): Buffer {
  const buf = fromHex(cleanHex(value), flag);
  if (buf.length !== bytes)
    throw optionError(flag, `must be ${bytes} bytes (${bytes * 2} hex digits), got ${buf.length}`);
  return buf;
}

function tpduOf(opts: EncodeOptions, frame: FrameJson | undefined): Tpdu {
  if (opts.tpdu !== undefined) return parseTpdu(hexOption(opts.tpdu, 5, '--tpdu'));
  const t = frame?.tpdu;
  const hex = t?.destination && t.source ? `60${t.destination}${t.source}` : DEFAULT_TPDU;
  return parseTpdu(hexOption(hex, 5, '--tpdu'));
}

function terminalHeaderOf(opts: EncodeOptions, frame: FrameJson | undefined): TerminalHeader {
  const hex = opts.header ?? frame?.header?.hex ?? DEFAULT_HEADER;
  const header = parseTerminalHeader(hexOption(hex, 6, '--header'));
  if (opts.processingRequirement === undefined) return header;
  const n = Number(opts.processingRequirement);
  if (!/^\d{1,2}$/.test(opts.processingRequirement) || n > 15) {
    throw optionError('--processing-requirement', 'must be an integer from 0 to 15');
  }
  return setProcessingRequirement(header, n);
}

function envelopeFor(
  profile: FramingProfile,
  body: Buffer,
  opts: EncodeOptions,
  frame: FrameJson | undefined,
): Envelope {
  const layout = profile.header;
  if (layout.kind === 'none') return { body };
  if (layout.kind === 'opaque') {
    const hex = opts.header ?? frame?.rawHeader;
    if (hex === undefined)
      throw optionError('--header', `${profile.name} framing needs --header (${layout.length} bytes)`);
    return { rawHeader: hexOption(hex, layout.length, '--header'), body };
  }
  const envelope: Envelope = { tpdu: tpduOf(opts, frame), header: terminalHeaderOf(opts, frame), body };
  const lri = opts.lri ?? frame?.lri;
  if (lri !== undefined) envelope.lri = hexOption(lri, 33, '--lri');
  return envelope;
}

function defaultFraming(dialect: Dialect, frame: FrameJson | undefined): (typeof ENCODE_FRAMINGS)[number] {
  const named = frame?.framing;
  if (named && (ENCODE_FRAMINGS as readonly string[]).includes(named))
    return named as (typeof ENCODE_FRAMINGS)[number];
  return dialect.family === 'unionpay-pos' ? 'terminal' : 'network';
}

function encodeCommand(opts: EncodeOptions): void {
  const input = readEncodeInput(opts.json);
  const dialect = getDialect(opts.dialect ?? input.dialect ?? 'unionpay-pos');
  const body = pack(dialect, input.message);
  const framing = opts.framing ?? defaultFraming(dialect, input.frame);
  let frame = body;
  if (framing !== 'none') {
    const profile = FRAMING_PROFILES[framing] ?? TERMINAL_PROFILE;
    frame = encodeFrame(buildEnvelope(envelopeFor(profile, body, opts, input.frame), profile), profile);
  }
  if (opts.out !== undefined) {
    try {
      writeFileSync(opts.out, frame);
    } catch (e) {
      throw inputError(
        `cannot write ${opts.out}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
        '--out',
        e,
      );
    }
  }
  process.stdout.write(`${toHex(frame)}\n`);
}

// --- registration -------------------------------------------------------------------------------

/** `poskey iso …`: decode and encode ISO 8583 frames. */
export function registerIsoCommands(program: Command): void {
  const iso = program.command('iso').description('decode and encode ISO 8583 frames (masked by default)');
  const dialectOption = () =>
    new Option('--dialect <name>', 'message dialect').choices(DIALECT_NAMES as readonly string[]);

  iso
    .command('decode')
    .description('show the frame layers and every field of an ISO 8583 frame (card data masked)')
    .argument('[hex...]', 'the frame as hex (spaces allowed); else --file, else stdin')
    .option('--file <path>', 'read the frame from a file (binary, or hex text: detected)')
    .option('--binary', 'treat --file/stdin as binary even if it looks like hex text')
    .addOption(dialectOption().default('unionpay-pos'))
    .addOption(
      new Option('--framing <kind>', 'frame layers in front of the message')
        .choices(DECODE_FRAMINGS)
        .default('auto'),
    )
    .option('--unmask', 'show PAN, tracks, PIN block, key block and card-data tags in clear')
    .option('--json', 'print exactly one JSON object on one line')
    .addHelpText(
      'after',
      `
Framing: terminal = 2-byte length (optional) + TPDU + [LRI] + 6-byte header; network = 2-byte length;
cups = 4 ASCII digits + 46-byte header; none = the bare message; auto detects the length and TPDU.

Example:
  $ poskey iso decode 003C600003000060310031100108000020000000C00012000001313233343536373831323334353637383930313233343500110000000100300003303031
`,
    )
    .action(action((hex: string[], opts: DecodeOptions) => decodeCommand(hex, opts)));

  iso
    .command('encode')
    .description('build a frame from a message in JSON; prints it as hex')
    .requiredOption(
      '--json <file>',
      "the message as JSON ('-' = stdin): a message object, or decode --json --unmask output",
    )
    .addOption(dialectOption())
    .addOption(
      new Option('--framing <kind>', 'frame layers (default: the input frame, else by dialect)').choices(
        ENCODE_FRAMINGS,
      ),
    )
    .option('--tpdu <hex>', `TPDU, 5 bytes (default: the input frame, else ${DEFAULT_TPDU})`)
    .option(
      '--header <hex>',
      `terminal header, 6 bytes (default ${DEFAULT_HEADER}); cups: the 46-byte header`,
    )
    .option('--processing-requirement <n>', 'set the header processing-requirement nibble (0-15)')
    .option('--lri <hex>', 'dial-up LRI, 33 bytes (4C5249001C…)')
    .option('--out <file>', 'also write the frame as binary to this file')
    .addHelpText(
      'after',
      `
A message is {"0": "0200", "2": "6222…", "60": {"1": "22", "2": "000001"}, "55": [{"tag": "9F26", "value": "…"}]};
binary values are hex. The dialect comes from --dialect, else the input, else unionpay-pos.
`,
    )
    .action(action((opts: EncodeOptions) => encodeCommand(opts)));
}
