/**
 * Balance inquiry (0200, 3 = 310000, 25 = 00, 60.1 = 01): forwarded like a purchase (no amount);
 * the network's field 54 (e.g. `1002156C000000010000`: account type, amount type, currency, sign,
 * 12-digit amount) comes back to the terminal.
 */
import { forwardedSteps } from './financial.js';

export const balanceSteps = forwardedSteps('balance');
