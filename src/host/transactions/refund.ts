/**
 * Refund (0220, 3 = 200000, 25 = 00, 60.1 = 25): a credit against an earlier sale (purchase or
 * completion, any batch, 61 + 37); refunds against one sale cannot exceed it in total. The original
 * keeps its status.
 */
import { followUpSteps } from './follow-up.js';

export const refundSteps = followUpSteps({
  txnType: 'refund',
  types: ['purchase', 'completion', 'completion_advice'],
  sameBatch: false,
  amount: 'at-most',
  afterSettlement: true,
  refund: true,
});
