/**
 * risk: the hook where the risk engine (velocity, amount limits, blacklists) will decide; for now
 * it approves everything. It sits after the PIN translation and before the journal, so a later
 * engine can decline (abort with its code) before anything is written ahead or forwarded.
 */
import { PREPARED, type Step } from '../context.js';

export const risk: Step = {
  name: 'risk',
  requires: ['terminal', 'pan'],
  provides: [],
  prepare: () => PREPARED,
};
