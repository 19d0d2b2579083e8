/**
 * Void of a purchase (0200, 3 = 200000, 25 = 00, 60.1 = 23): the original purchase in the same
 * batch (61.1 batch, 61.2 trace, 37 RRN, same card and amount) is cancelled at the network
 * (credited back) and journalled `voided`.
 */
import { followUpSteps } from './follow-up.js';

export const voidSteps = followUpSteps({
  txnType: 'void',
  types: ['purchase'],
  sameBatch: true,
  amount: 'equal',
  originalStatus: 'voided',
});
