/**
 * Pre-authorisation completion, online (0200, 3 = 000000, 25 = 06, 60.1 = 20) and as an advice
 * (0220, 60.1 = 24): the hold of a pre-auth (61 + 37, same card, any batch) becomes a debit of at
 * most the authorised amount (no tolerance: the research names none); the pre-auth is journalled
 * `completed`.
 */
import { followUpSteps } from './follow-up.js';

const rule = {
  types: ['preauth'],
  sameBatch: false,
  amount: 'at-most',
  afterSettlement: true,
  originalStatus: 'completed',
} as const;

export const completionSteps = followUpSteps({ txnType: 'completion', ...rule });
export const completionAdviceSteps = followUpSteps({ txnType: 'completion_advice', ...rule });
