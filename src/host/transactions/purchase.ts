/** Purchase (0200, 3 = 000000, 25 = 00, 60.1 = 22): forwarded to the card network. */
import { forwardedSteps } from './financial.js';

export const purchaseSteps = forwardedSteps('purchase');
