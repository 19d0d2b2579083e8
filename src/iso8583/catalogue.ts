/**
 * The message-type catalogue: (MTI, processing code, 25, 60.1, 60.3) → transaction name and
 * direction, for the host's router.
 *
 * unionpay-pos follows research/iso8583.md §1.6 (chinaljp `g_staTranTbl`, Bestpay `PosConstant`):
 * financial messages route on MTI + F3[0..2] + F25 + 60.1, management messages on MTI + 60.3.
 * The network family (ISO 8583:1987) routes on MTI + F3[0..2] + F25, and on MTI + F70 for network
 * management. A response is classified by the request MTI it answers (0210 → 0200 rules), and a
 * field a response does not echo (F25 in some 0210s) counts as a wildcard.
 */
import { getValue, type IsoMessage } from './codec.js';
import type { Dialect } from './spec.js';

export type TransactionName =
  | 'purchase'
  | 'void'
  | 'refund'
  | 'balance'
  | 'preauth'
  | 'preauth-void'
  | 'completion'
  | 'completion-advice'
  | 'completion-void'
  | 'offline-purchase'
  | 'authorization'
  | 'reversal'
  | 'reversal-advice'
  | 'sign-in'
  | 'sign-off'
  | 'sign-on'
  | 'key-exchange'
  | 'echo'
  | 'settlement'
  | 'batch-upload'
  | 'parameter-download'
  | 'ic-key-download'
  | 'ic-key-download-end'
  | 'ic-param-download'
  | 'ic-param-download-end'
  | 'blacklist-download'
  | 'blacklist-download-end'
  | 'contactless-param-download'
  | 'contactless-param-download-end'
  | 'download-status-report'
  | 'script-advice'
  | 'unknown';

export type Direction = 'request' | 'response';

export interface Classification {
  name: TransactionName;
  direction: Direction;
  /** The request MTI this message is or answers. */
  requestMti: string;
  /** The routing key as hosts build it: MTI + F3[0..2] + F25 + 60.1, or MTI + 60.3 (F70 on the network side). */
  key: string;
  /** For reversals: the transaction being reversed, when it can be told. */
  reverses?: TransactionName;
  /** For sign-in and batch upload: the variant from 60.3 (key length, detail vs end). */
  variant?: string;
}

interface Rule {
  mti: string;
  /** First two digits of field 3. */
  f3?: string;
  f25?: string;
  f60_1?: string;
  /** Possible 60.3 (or F70) values. */
  code?: readonly string[];
  name: TransactionName;
}

/** §1.6, financial rows: (MTI, F3[0..2], F25, 60.1). */
const POS_FINANCIAL: readonly Rule[] = [
  { mti: '0200', f3: '31', f25: '00', f60_1: '01', name: 'balance' },
  { mti: '0200', f3: '00', f25: '00', f60_1: '22', name: 'purchase' },
  { mti: '0200', f3: '20', f25: '00', f60_1: '23', name: 'void' },
  { mti: '0220', f3: '20', f25: '00', f60_1: '25', name: 'refund' },
  { mti: '0100', f3: '03', f25: '06', f60_1: '10', name: 'preauth' },
  { mti: '0100', f3: '20', f25: '06', f60_1: '11', name: 'preauth-void' },
  { mti: '0200', f3: '00', f25: '06', f60_1: '20', name: 'completion' },
  { mti: '0220', f3: '00', f25: '06', f60_1: '24', name: 'completion-advice' },
  { mti: '0200', f3: '20', f25: '06', f60_1: '21', name: 'completion-void' },
  { mti: '0200', f3: '00', f25: '00', f60_1: '36', name: 'offline-purchase' },
];

/** §1.6, management rows: (MTI, 60.3). 0820/301 (echo test) is common UnionPay POS usage, not in the table. */
const POS_MANAGEMENT: readonly Rule[] = [
  { mti: '0800', code: ['001', '003', '004', '006'], name: 'sign-in' },
  { mti: '0820', code: ['002'], name: 'sign-off' },
  { mti: '0820', code: ['301'], name: 'echo' },
  { mti: '0800', code: ['360'], name: 'parameter-download' },
  { mti: '0800', code: ['370'], name: 'ic-key-download' },
  { mti: '0800', code: ['371'], name: 'ic-key-download-end' },
  { mti: '0800', code: ['380'], name: 'ic-param-download' },
  { mti: '0800', code: ['381'], name: 'ic-param-download-end' },
  { mti: '0800', code: ['390'], name: 'blacklist-download' },
  { mti: '0800', code: ['391'], name: 'blacklist-download-end' },
  { mti: '0800', code: ['394'], name: 'contactless-param-download' },
  { mti: '0800', code: ['395'], name: 'contactless-param-download-end' },
  { mti: '0820', code: ['372', '382'], name: 'download-status-report' },
  { mti: '0620', code: ['951'], name: 'script-advice' },
];

const SIGN_IN_VARIANTS: Record<string, string> = {
  '001': 'single-length keys',
  '003': 'double-length keys',
  '004': 'double-length keys with TDK',
  '006': 'SM4 keys',
};

/** Network side (ISO 8583:1987 usage): (MTI, F3[0..2], F25). */
const NETWORK_FINANCIAL: readonly Rule[] = [
  { mti: '0100', f3: '03', name: 'preauth' },
  { mti: '0100', f3: '20', name: 'preauth-void' },
  { mti: '0100', f3: '31', name: 'balance' },
  { mti: '0100', name: 'authorization' },
  { mti: '0200', f3: '31', name: 'balance' },
  // Normal (25 = 00) before pre-auth (06): a response without F25 is then the common case.
  { mti: '0200', f3: '00', f25: '00', name: 'purchase' },
  { mti: '0200', f3: '20', f25: '00', name: 'void' },
  { mti: '0200', f3: '00', f25: '06', name: 'completion' },
  { mti: '0200', f3: '20', f25: '06', name: 'completion-void' },
  { mti: '0220', f3: '20', name: 'refund' },
  { mti: '0220', f3: '00', f25: '06', name: 'completion-advice' },
];

/** Network management by field 70. */
const NETWORK_MANAGEMENT: readonly Rule[] = [
  { mti: '0800', code: ['001'], name: 'sign-on' },
  { mti: '0800', code: ['002'], name: 'sign-off' },
  { mti: '0800', code: ['101', '161'], name: 'key-exchange' },
  { mti: '0800', code: ['301'], name: 'echo' },
  { mti: '0820', code: ['001'], name: 'sign-on' },
  { mti: '0820', code: ['002'], name: 'sign-off' },
  { mti: '0820', code: ['101', '161'], name: 'key-exchange' },
  { mti: '0820', code: ['301'], name: 'echo' },
];

const ANY = (want: string | undefined, got: string | undefined) =>
  want === undefined || got === undefined || want === got;

function matchFinancial(
  rules: readonly Rule[],
  mti: string,
  f3: string | undefined,
  f25: string | undefined,
  f60_1: string | undefined,
) {
  // 60.1 (when the dialect has it) is the discriminating key; absent F3/F25 in a response are wildcards.
  return rules.find(
    (r) => r.mti === mti && ANY(r.f3, f3) && ANY(r.f25, f25) && (r.f60_1 === undefined || r.f60_1 === f60_1),
  );
}

/** The request MTI a message is or answers, and its direction (third digit odd = response). */
function requestOf(mti: string): { requestMti: string; direction: Direction } {
  const third = mti.charCodeAt(2) - 48;
  if (third % 2 === 1)
    return { requestMti: mti.slice(0, 2) + String(third - 1) + mti[3], direction: 'response' };
  return { requestMti: mti, direction: 'request' };
}

function classifyPos(
  msg: IsoMessage,
  requestMti: string,
  base: Omit<Classification, 'name' | 'key'>,
): Classification {
  const f3 = getValue(msg, 3)?.slice(0, 2);
  const f25 = getValue(msg, 25);
  const f60_1 = getValue(msg, '60.1');
  const f60_3 = getValue(msg, '60.3');
  const financialKey = `${requestMti}${f3 ?? ''}${f25 ?? ''}${f60_1 ?? ''}`;
  if (requestMti === '0400' || requestMti === '0420') {
    const original =
      matchFinancial(POS_FINANCIAL, '0200', f3, f25, f60_1) ??
      matchFinancial(POS_FINANCIAL, '0100', f3, f25, f60_1) ??
      matchFinancial(POS_FINANCIAL, '0220', f3, f25, f60_1);
    const name: TransactionName = requestMti === '0400' ? 'reversal' : 'reversal-advice';
    return { ...base, name, key: financialKey, ...(original ? { reverses: original.name } : {}) };
  }
  if (requestMti === '0500') return { ...base, name: 'settlement', key: `${requestMti}${f60_3 ?? ''}` };
  if (requestMti === '0320') {
    const variant = f60_3 === '202' || f60_3 === '207' ? 'end' : 'detail';
    return { ...base, name: 'batch-upload', key: `${requestMti}${f60_3 ?? ''}`, variant };
  }
  const mgmt = POS_MANAGEMENT.find(
    (r) => r.mti === requestMti && f60_3 !== undefined && r.code!.includes(f60_3),
  );
  if (mgmt) {
    const variant = mgmt.name === 'sign-in' ? SIGN_IN_VARIANTS[f60_3!] : undefined;
    return { ...base, name: mgmt.name, key: `${requestMti}${f60_3}`, ...(variant ? { variant } : {}) };
  }
  const fin = f60_1 === undefined ? undefined : matchFinancial(POS_FINANCIAL, requestMti, f3, f25, f60_1);
  return { ...base, name: fin?.name ?? 'unknown', key: financialKey };
}

function classifyNetwork(
  msg: IsoMessage,
  requestMti: string,
  base: Omit<Classification, 'name' | 'key'>,
): Classification {
  const f3 = getValue(msg, 3)?.slice(0, 2);
  const f25 = getValue(msg, 25);
  const f70 = getValue(msg, 70);
  if (requestMti === '0800' || requestMti === '0820') {
    const rule = NETWORK_MANAGEMENT.find(
      (r) => r.mti === requestMti && f70 !== undefined && r.code!.includes(f70),
    );
    return { ...base, name: rule?.name ?? 'unknown', key: `${requestMti}${f70 ?? ''}` };
  }
  const key = `${requestMti}${f3 ?? ''}${f25 ?? ''}`;
  if (requestMti === '0400' || requestMti === '0420') {
    const original =
      matchFinancial(NETWORK_FINANCIAL, '0200', f3, f25, undefined) ??
      matchFinancial(NETWORK_FINANCIAL, '0100', f3, f25, undefined);
    const name: TransactionName = requestMti === '0400' ? 'reversal' : 'reversal-advice';
    return { ...base, name, key, ...(original ? { reverses: original.name } : {}) };
  }
  if (requestMti === '0500') return { ...base, name: 'settlement', key };
  return {
    ...base,
    name: matchFinancial(NETWORK_FINANCIAL, requestMti, f3, f25, undefined)?.name ?? 'unknown',
    key,
  };
}

/**
 * Names the transaction a message carries and whether it is a request or a response. Never throws
 * for a well-formed MTI; anything it cannot place is `unknown` (with the routing key still built).
 */
export function classify(dialect: Dialect, msg: IsoMessage): Classification {
  const mti = typeof msg?.[0] === 'string' && /^\d{4}$/.test(msg[0]) ? msg[0] : '0000';
  const { requestMti, direction } = requestOf(mti);
  const base = { direction, requestMti };
  return dialect.family === 'unionpay-pos'
    ? classifyPos(msg, requestMti, base)
    : classifyNetwork(msg, requestMti, base);
}
