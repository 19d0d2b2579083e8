/**
 * Human-readable and JSON descriptions of ISO 8583 frames and messages, masked by default (the
 * moov-io `describe` model): the PAN shows its first 6 and last 4 digits, tracks keep only those and
 * their separators, PIN blocks and key blocks are starred out, and so are the card-data tags inside
 * field 55. The CLI prints these descriptions; the host's logger uses `maskPan`, `maskTrack` and
 * `maskMessage` so no log line carries card data.
 */
import { type Classification, classify } from './catalogue.js';
import type { FieldValue, IsoMessage } from './codec.js';
import type { Subfields } from './composite.js';
import type { Envelope, FramingProfile } from './framing.js';
import { PROCESSING_REQUIREMENTS } from './framing.js';
import type { Dialect, FieldSpec, SubfieldSpec } from './spec.js';
import type { TlvItem } from './tlv.js';

const MASK = '*';

/**
 * Masks a PAN, keeping the first 6 and last 4 digits when at least 13 are present (the most PCI DSS
 * allows to be shown), only the last 4 for 8–12 digits, and nothing below that. Length is kept.
 */
export function maskPan(pan: string): string {
  const n = pan.length;
  if (n >= 13) return pan.slice(0, 6) + MASK.repeat(n - 10) + pan.slice(n - 4);
  if (n >= 8) return MASK.repeat(n - 4) + pan.slice(n - 4);
  return MASK.repeat(n);
}

/** Field separators: `=` in track 2/3, `D` in packed (hex) track images, `^` in track 1. */
const SEPARATORS = ['=', 'D', '^'];

/**
 * Masks track data (track 2 `PAN=YYMM…`, track 3, track 1 `B…^NAME^…`, EMV tag 57 hex with `D`):
 * the part before the first separator is masked like a PAN; after it every character is starred
 * out except that same separator character, so the layout stays visible and the expiry, service
 * code, name and discretionary data do not.
 */
export function maskTrack(track: string): string {
  let cut = -1;
  for (let i = 0; i < track.length && cut < 0; i++) if (SEPARATORS.includes(track[i]!)) cut = i;
  if (cut < 0) return maskPan(track);
  const sep = track[cut];
  let rest = '';
  for (let i = cut; i < track.length; i++) rest += track[i] === sep ? sep : MASK;
  return maskPan(track.slice(0, cut)) + rest;
}

const maskAll = (value: string): string => MASK.repeat(value.length);

/** EMV tag 5A: packed digits with trailing F pad nibbles, which stay visible as padding. */
function maskPanHex(value: string): string {
  const digits = value.replace(/F+$/i, '');
  return maskPan(digits) + value.slice(digits.length);
}

/** Well-known EMV/PBOC tags in field 55 (EMV Book 3 Annex A; 9F63 and DF31 from UnionPay usage, §2.9). */
export const EMV_TAG_NAMES: Readonly<Record<string, string>> = Object.freeze({
  '4F': 'application identifier (AID), card',
  '50': 'application label',
  '56': 'track 1 data',
  '57': 'track 2 equivalent data',
  '5A': 'application PAN',
  '5F20': 'cardholder name',
  '5F24': 'application expiration date',
  '5F25': 'application effective date',
  '5F2A': 'transaction currency code',
  '5F34': 'PAN sequence number',
  '71': 'issuer script template 1',
  '72': 'issuer script template 2',
  '82': 'application interchange profile (AIP)',
  '84': 'dedicated file (DF) name',
  '8A': 'authorisation response code',
  '91': 'issuer authentication data',
  '95': 'terminal verification results (TVR)',
  '9A': 'transaction date',
  '9B': 'transaction status information (TSI)',
  '9C': 'transaction type',
  '9F02': 'amount, authorised',
  '9F03': 'amount, other',
  '9F06': 'application identifier (AID), terminal',
  '9F09': 'application version number',
  '9F10': 'issuer application data (IAD)',
  '9F1A': 'terminal country code',
  '9F1E': 'interface device (IFD) serial number',
  '9F1F': 'track 1 discretionary data',
  '9F20': 'track 2 discretionary data',
  '9F26': 'application cryptogram (ARQC)',
  '9F27': 'cryptogram information data (CID)',
  '9F33': 'terminal capabilities',
  '9F34': 'CVM results',
  '9F35': 'terminal type',
  '9F36': 'application transaction counter (ATC)',
  '9F37': 'unpredictable number',
  '9F41': 'transaction sequence counter',
  '9F5B': 'issuer script results',
  '9F63': 'product identification information (UnionPay)',
  '9F6B': 'track 2 data (contactless)',
  '9F74': 'e-cash issuer authorisation code',
  DF31: 'issuer script results (PBOC)',
});

/** Field 55 tags that carry card data: the PAN and track images, the cardholder name. */
const SENSITIVE_TAGS: Readonly<Record<string, (v: string) => string>> = Object.freeze({
  '5A': maskPanHex,
  '57': maskTrack,
  '9F6B': maskTrack,
  '56': maskAll,
  '5F20': maskAll,
  '9F1F': maskAll,
  '9F20': maskAll,
});

/**
 * How a field's value is masked, or undefined when it is shown. Field 62 of a network-management
 * message (08xx) is the working-key block under the TMK: ciphertext, but it is masked anyway so
 * logs do not pile up key cryptograms that a later TMK compromise would open.
 */
function fieldMask(mti: string, n: number): ((v: string) => string) | undefined {
  switch (n) {
    case 2:
    case 34: // extended PAN
      return maskPan;
    case 35:
    case 36:
    case 45: // track 1
      return maskTrack;
    case 52: // PIN block
      return maskAll;
    case 62:
      return mti.startsWith('08') ? maskAll : undefined;
    default:
      return undefined;
  }
}

function maskTlv(items: TlvItem[]): TlvItem[] {
  return items.map((t) => {
    const m = SENSITIVE_TAGS[t.tag];
    return m ? { tag: t.tag, value: m(t.value) } : { tag: t.tag, value: t.value };
  });
}

function copyValue(v: FieldValue): FieldValue {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map((t) => ({ tag: t.tag, value: t.value }));
  return JSON.parse(JSON.stringify(v)) as Subfields;
}

/**
 * A deep copy of `msg` with card data masked (fields 2, 34, 35, 36, 45, 52, 62 in 08xx, and the
 * sensitive tags of 55). The copy is for display and logs: it will not pack back to the original.
 */
export function maskMessage(msg: IsoMessage): IsoMessage {
  const mti = typeof msg[0] === 'string' ? msg[0] : '';
  const out = { 0: msg[0] } as IsoMessage;
  for (const key of Object.keys(msg)) {
    const n = Number(key);
    const v = msg[n];
    if (n === 0 || v === undefined) continue;
    const m = fieldMask(mti, n);
    if (typeof v === 'string') out[n] = m ? m(v) : v;
    else if (Array.isArray(v)) out[n] = maskTlv(v);
    else out[n] = copyValue(v);
  }
  return out;
}

// --- structured descriptions ----------------------------------------------------------------

export interface DescribeOptions {
  /** Show PAN, tracks, PIN block, key block and card-data tags in clear. Default false. */
  unmask?: boolean;
}

export interface TlvDescription {
  tag: string;
  name?: string;
  /** Value length in bytes. */
  length: number;
  /** Hex, masked for card-data tags unless unmasked. */
  value: string;
  masked?: true;
}

export interface FieldDescription {
  /** Dotted path: '2', '60', '60.1', '63.2.1'. */
  field: string;
  name: string;
  /** The value (for composites, the subfields joined); absent for TLV fields. */
  value?: string;
  /** Length in the field's units (digits, characters or bytes). */
  length?: number;
  masked?: true;
  subfields?: FieldDescription[];
  tags?: TlvDescription[];
}

export interface MessageDescription {
  dialect: string;
  mti: string;
  transaction: Classification;
  fields: FieldDescription[];
  /** The message object (codec shape, masked unless unmasked); with --unmask, `pack` accepts it back. */
  message: IsoMessage;
  /** True when masking was applied (the message will not pack back to the original bytes). */
  masked: boolean;
}

function joined(v: string | Subfields): string {
  if (typeof v === 'string') return v;
  return Object.keys(v)
    .map(Number)
    .sort((a, b) => a - b)
    .map((k) => joined(v[k]!))
    .join('');
}

function describeSubfields(path: string, v: Subfields, subs: readonly SubfieldSpec[]): FieldDescription[] {
  const out: FieldDescription[] = [];
  for (const s of subs) {
    const sv = v[s.id];
    if (sv === undefined) continue;
    const here = `${path}.${s.id}`;
    const text = joined(sv);
    const d: FieldDescription = { field: here, name: s.desc, value: text, length: text.length };
    if (typeof sv !== 'string' && s.subfields) d.subfields = describeSubfields(here, sv, s.subfields);
    out.push(d);
  }
  return out;
}

function describeTlv(items: TlvItem[], unmask: boolean): TlvDescription[] {
  return items.map((t) => {
    const m = unmask ? undefined : SENSITIVE_TAGS[t.tag];
    const d: TlvDescription = { tag: t.tag, length: t.value.length / 2, value: m ? m(t.value) : t.value };
    const name = EMV_TAG_NAMES[t.tag];
    if (name) d.name = name;
    if (m) d.masked = true;
    return d;
  });
}

/** Bytes one data object takes on the wire: tag, minimal-form length, value. */
function tlvItemSize(t: TlvItem): number {
  const n = t.value.length / 2;
  return t.tag.length / 2 + (n < 0x80 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 4) + n;
}

function unitLength(spec: FieldSpec | undefined, value: string): number {
  return spec?.enc.unit === 'byte' ? value.length / 2 : value.length;
}

function describeField(
  mti: string,
  n: number,
  v: FieldValue,
  spec: FieldSpec | undefined,
  unmask: boolean,
): FieldDescription {
  const d: FieldDescription = { field: String(n), name: spec?.desc ?? `field ${n}` };
  if (Array.isArray(v)) {
    d.length = v.reduce((sum, t) => sum + tlvItemSize(t), 0);
    d.tags = describeTlv(v, unmask);
    return d;
  }
  const text = joined(v);
  const m = unmask ? undefined : fieldMask(mti, n);
  d.value = m ? m(text) : text;
  d.length = unitLength(spec, text);
  if (m) d.masked = true;
  if (typeof v !== 'string' && spec?.subfields) d.subfields = describeSubfields(String(n), v, spec.subfields);
  return d;
}

/** Describes every present field in ascending order, masked unless `unmask`. */
export function describeMessage(
  dialect: Dialect,
  msg: IsoMessage,
  options: DescribeOptions = {},
): MessageDescription {
  const unmask = options.unmask === true;
  const mti = msg[0];
  const table = dialect.table(mti);
  const numbers = Object.keys(msg)
    .map(Number)
    .filter((n) => n > 0 && msg[n] !== undefined)
    .sort((a, b) => a - b);
  return {
    dialect: dialect.name,
    mti,
    transaction: classify(dialect, msg),
    fields: numbers.map((n) => describeField(mti, n, msg[n]!, table[n], unmask)),
    message: unmask ? msg : maskMessage(msg),
    masked: !unmask,
  };
}

export interface FrameDescription {
  /** The framing profile name ('terminal', 'network', 'cups') or 'none' for a bare body. */
  framing: string;
  /** The length prefix: its kind and the payload length it announced; absent when the input had none. */
  length?: { kind: string; value: number };
  tpdu?: { id: string; destination: string; source: string };
  /** The dial-up LRI as hex. */
  lri?: string;
  header?: {
    hex: string;
    appType: string;
    version: string;
    terminalStatus: number;
    processingRequirement: number;
    processingRequirementName: string;
    subVersion: string;
  };
  /** An opaque header (CUPS 46 bytes) as hex. */
  rawHeader?: string;
  /** Bytes of ISO 8583 body. */
  bodyLength: number;
}

const hex4 = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');

/** Describes the frame layers of a parsed envelope; `payloadLength` is the announced length, if any. */
export function describeEnvelope(
  envelope: Envelope,
  profile: FramingProfile | undefined,
  payloadLength?: number,
): FrameDescription {
  const d: FrameDescription = { framing: profile?.name ?? 'none', bodyLength: envelope.body.length };
  if (profile && payloadLength !== undefined) d.length = { kind: profile.length, value: payloadLength };
  const { tpdu, header, lri, rawHeader } = envelope;
  if (tpdu)
    d.tpdu = {
      id: tpdu.id.toString(16).toUpperCase(),
      destination: hex4(tpdu.destination),
      source: hex4(tpdu.source),
    };
  if (lri) d.lri = lri.toString('hex').toUpperCase();
  if (header) {
    d.header = {
      hex:
        header.appType +
        header.version +
        header.terminalStatus.toString(16).toUpperCase() +
        header.processingRequirement.toString(16).toUpperCase() +
        header.subVersion,
      appType: header.appType,
      version: header.version,
      terminalStatus: header.terminalStatus,
      processingRequirement: header.processingRequirement,
      processingRequirementName: PROCESSING_REQUIREMENTS[header.processingRequirement] ?? 'acquirer-specific',
      subVersion: header.subVersion,
    };
  }
  if (rawHeader) d.rawHeader = rawHeader.toString('hex').toUpperCase();
  return d;
}

// --- text rendering -------------------------------------------------------------------------

type Row = [label: string, name: string, value: string];

function fieldRows(f: FieldDescription, indent: string, rows: Row[]): void {
  const shown = f.value === undefined ? `(${f.tags?.length ?? 0} tags, ${f.length ?? 0} bytes)` : f.value;
  rows.push([`${indent}${f.field}`, f.name, shown]);
  for (const s of f.subfields ?? []) fieldRows(s, `${indent}  `, rows);
  for (const t of f.tags ?? [])
    rows.push([`${indent}  ${t.tag}`, t.name ?? 'unknown tag', `[${t.length}] ${t.value}`]);
}

const NAME_WIDTH = 46;

/** Aligns rows in three columns: field number or tag, name (long names shortened), value. */
function renderRows(rows: Row[]): string[] {
  const w0 = Math.max(0, ...rows.map((r) => r[0].length)) + 2;
  const w1 = Math.min(NAME_WIDTH, Math.max(0, ...rows.map((r) => r[1].length))) + 2;
  return rows.map(([label, name, value]) => {
    const n = name.length > w1 - 2 ? `${name.slice(0, w1 - 3)}…` : name;
    return `${label.padEnd(w0)}${n.padEnd(w1)}${value}`;
  });
}

/** Renders the frame layers (if any) and the message as aligned text lines. */
export function formatDescription(message: MessageDescription, frame?: FrameDescription): string {
  const out: string[] = [];
  if (frame) {
    const len = frame.length ? `, length ${frame.length.value} (${frame.length.kind})` : '';
    out.push(`frame   ${frame.framing}${len}, body ${frame.bodyLength} bytes`);
    if (frame.tpdu)
      out.push(`tpdu    ${frame.tpdu.id} destination ${frame.tpdu.destination} source ${frame.tpdu.source}`);
    if (frame.lri) out.push(`lri     ${frame.lri}`);
    if (frame.header) {
      const h = frame.header;
      out.push(
        `header  ${h.hex}: app type ${h.appType}, version ${h.version}, terminal status ${h.terminalStatus}, ` +
          `processing requirement ${h.processingRequirement} (${h.processingRequirementName}), sub-version ${h.subVersion}`,
      );
    }
    if (frame.rawHeader) out.push(`header  ${frame.rawHeader}`);
  }
  const t = message.transaction;
  const extra = [t.variant, t.reverses ? `reverses ${t.reverses}` : undefined].filter(Boolean).join(', ');
  out.push(
    `mti     ${message.mti} ${t.name} ${t.direction}${extra ? ` (${extra})` : ''}  [${message.dialect}]`,
  );
  const rows: Row[] = [];
  for (const f of message.fields) fieldRows(f, '  ', rows);
  out.push(...renderRows(rows));
  const hid = message.fields.some((f) => f.masked || f.tags?.some((t) => t.masked));
  if (hid) out.push('(card data masked; --unmask shows it)');
  return out.join('\n');
}
