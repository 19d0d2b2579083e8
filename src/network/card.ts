/**
 * Card facts shared by the ledger and the CLI, in a module with no dependencies so that loading
 * the CLI does not load SQLite.
 */

export type CardStatus = 'active' | 'blocked' | 'restricted' | 'lost' | 'stolen';

/** Only `active` cards transact; every other status is answered 62 (restricted card). */
export const CARD_STATUSES: readonly CardStatus[] = Object.freeze([
  'active',
  'blocked',
  'restricted',
  'lost',
  'stolen',
]);

/** ISO 4217 numeric code of the default currency (CNY), as field 49 carries it. */
export const DEFAULT_CURRENCY = '156';
