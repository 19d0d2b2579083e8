/**
 * Pre-authorisation (0100, 3 = 030000, 25 = 06, 60.1 = 10): forwarded like a purchase; the network
 * places a hold for the amount (the card's available balance drops, its balance does not).
 */
import { forwardedSteps } from './financial.js';

export const preauthSteps = forwardedSteps('preauth');
