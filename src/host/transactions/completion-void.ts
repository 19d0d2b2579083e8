/**
 * Completion void (0200, 3 = 200000, 25 = 06, 60.1 = 21): a completion in the same batch (61 + 37,
 * same card and amount) is credited back at the network and journalled `voided`. The pre-auth
 * stays `completed`: its hold is not placed again.
 */
import { followUpSteps } from './follow-up.js';

export const completionVoidSteps = followUpSteps({
  txnType: 'completion_void',
  types: ['completion', 'completion_advice'],
  sameBatch: true,
  amount: 'equal',
  originalStatus: 'voided',
});
