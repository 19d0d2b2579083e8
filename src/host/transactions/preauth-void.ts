/**
 * Pre-authorisation void (0100, 3 = 200000, 25 = 06, 60.1 = 11): the hold of a pre-auth not yet
 * completed (61 + 37, same card and amount, any batch) is released; the pre-auth is journalled `voided`.
 */
import { followUpSteps } from './follow-up.js';

export const preauthVoidSteps = followUpSteps({
  txnType: 'preauth_void',
  types: ['preauth'],
  sameBatch: false,
  amount: 'equal',
  afterSettlement: true,
  originalStatus: 'voided',
});
