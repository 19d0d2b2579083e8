/**
 * The issuer's rules for follow-ups: requests that refer to an earlier authorisation by the RRN in
 * field 90 (src/protocol/original-data.ts). Decided inside the ledger transaction
 * (`Ledger.followUp`), so a retransmission changes nothing twice and two follow-ups of one
 * original cannot both apply.
 *
 * | Kind (network catalogue) | Original | Effect when approved |
 * |---|---|---|
 * | void (0200, 20, 25 = 00) | approved purchase, not voided, same amount | credit, original `voided` |
 * | refund (0220, 20) | approved purchase or completion, not voided | credit; refunds in total ≤ the original |
 * | preauth-void (0100, 20) | pre-auth still held, same amount | the hold released (`released`) |
 * | completion (0200, 00, 25 = 06) / completion-advice (0220) | pre-auth still held, amount ≤ it | debit, the hold gone (`completed`) |
 * | completion-void (0200, 20, 25 = 06) | approved completion, not voided, same amount | credit, completion `voided` |
 *
 * Refusals: no such original, another card, or an original that was declined → 25; an original
 * no longer in the state the kind needs (already voided, released, completed; a refund of a voided
 * sale, a void of a sale already partly refunded) → 12; an amount that differs from the original, or goes over it → 13.
 */
import type { TransactionName } from '../iso8583/index.js';
import { RC } from '../protocol/unionpay-pos.js';
import type { Card, FollowUpDecision, OriginalAuthorisation } from './ledger.js';

export type FollowUpKind = 'void' | 'refund' | 'preauth-void' | 'completion' | 'completion-void';

/** The follow-up kind of a network catalogue name (a completion advice applies like a completion). */
export function followUpKind(name: TransactionName): FollowUpKind | undefined {
  switch (name) {
    case 'void':
    case 'refund':
    case 'preauth-void':
    case 'completion':
    case 'completion-void':
      return name;
    case 'completion-advice':
      return 'completion';
    default:
      return undefined;
  }
}

/** What each kind needs of its original: the original's kind and status. */
const NEEDS: Readonly<Record<FollowUpKind, { kinds: readonly string[]; status: string }>> = {
  void: { kinds: ['purchase'], status: 'applied' },
  refund: { kinds: ['purchase', 'completion'], status: 'applied' },
  'preauth-void': { kinds: ['preauth'], status: 'held' },
  completion: { kinds: ['preauth'], status: 'held' },
  'completion-void': { kinds: ['completion'], status: 'applied' },
};

/** The original's status after an approved follow-up (a refund leaves it as it is). */
const AFTER: Readonly<Record<FollowUpKind, string | undefined>> = {
  void: 'voided',
  refund: undefined,
  'preauth-void': 'released',
  completion: 'completed',
  'completion-void': 'voided',
};

/** Whether the amount is acceptable against the original (see the module comment). */
function amountFits(kind: FollowUpKind, amount: number, o: OriginalAuthorisation): boolean {
  if (amount <= 0) return false;
  if (kind === 'refund') return o.refunded + amount <= o.amount;
  if (kind === 'completion') return amount <= o.amount;
  return amount === o.amount;
}

/** The decision for one follow-up; `authCode` makes the approval's field 38. */
export function decideFollowUp(
  kind: FollowUpKind,
  amount: number,
  card: Card | undefined,
  original: OriginalAuthorisation | undefined,
  authCode: () => string,
): FollowUpDecision {
  const needs = NEEDS[kind];
  if (
    original === undefined ||
    card === undefined ||
    original.cardId !== card.id ||
    original.responseCode !== RC.APPROVED ||
    !needs.kinds.includes(original.kind)
  ) {
    return { responseCode: RC.ORIGINAL_NOT_FOUND };
  }
  // A sale already partly refunded cannot be voided as well: the credits would exceed it.
  if (original.status !== needs.status || (kind === 'void' && original.refunded > 0)) {
    return { responseCode: RC.INVALID_TRANSACTION };
  }
  if (!amountFits(kind, amount, original)) return { responseCode: RC.INVALID_AMOUNT };
  const d: FollowUpDecision = { responseCode: RC.APPROVED, authCode: authCode() };
  const after = AFTER[kind];
  if (after !== undefined) d.originalStatus = after;
  if (kind === 'completion') d.debit = amount;
  else if (kind !== 'preauth-void') d.credit = amount;
  return d;
}
