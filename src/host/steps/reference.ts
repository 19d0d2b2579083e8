/**
 * reference: gives the transaction its RRN (field 37) before anything is journalled or sent, so
 * the request row, the network request and the reply all carry the same one.
 */
import { PREPARED, type Step } from '../context.js';

export const assignReference: Step = {
  name: 'reference',
  requires: [],
  provides: ['rrn'],
  prepare(ctx) {
    ctx.rrn = ctx.host.ids.rrn(ctx.host.clock());
    return PREPARED;
  },
};
