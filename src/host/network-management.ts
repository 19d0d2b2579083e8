/**
 * Network management messages the host sends on the link (0800, field 70): the request body, MACed
 * under a ZAK when one is given (sign-on, key exchange) or bare (echo, which the network answers
 * without a MAC check so a link can be tested before any key is in place).
 */
import type { HsmClient } from '../hsm/api.js';
import { type IsoMessage, pack } from '../iso8583/index.js';
import { NETWORK_DIALECT, NETWORK_MAC } from '../protocol/network-link.js';
import type { NetworkReply } from './network-link.js';

const ZERO_MAC = '0000000000000000';
const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** Field 7: transmission date and time MMDDhhmmss, UTC. */
export function transmissionTime(now: number): string {
  const d = new Date(now);
  return (
    pad2(d.getUTCMonth() + 1) +
    pad2(d.getUTCDate()) +
    pad2(d.getUTCHours()) +
    pad2(d.getUTCMinutes()) +
    pad2(d.getUTCSeconds())
  );
}

/** A packed 0800 with 7, 11, 32 and 70; with a MAC in 128 under `zak` when given. */
export async function managementRequest(opts: {
  code: string;
  stan: string;
  acquirerId: string;
  now: number;
  mac?: { hsm: HsmClient; zak: string };
}): Promise<Buffer> {
  const msg: IsoMessage = {
    0: '0800',
    7: transmissionTime(opts.now),
    11: opts.stan,
    32: opts.acquirerId,
    70: opts.code,
  };
  if (opts.mac === undefined) return pack(NETWORK_DIALECT, msg);
  msg[128] = ZERO_MAC;
  const body = pack(NETWORK_DIALECT, msg);
  const mac = await opts.mac.hsm.generateMac({
    key: { kind: 'key', keyBlock: opts.mac.zak },
    algorithm: NETWORK_MAC.algorithm,
    padding: NETWORK_MAC.padding,
    length: NETWORK_MAC.length,
    data: body.toString('hex', 0, body.length - 8),
  });
  body.write(mac, body.length - 8, 'hex');
  return body;
}

/** True when the answer's MAC (its last 8 bytes, field 128 or 64) verifies under `zak`. */
export async function answerMacVerifies(hsm: HsmClient, zak: string, reply: NetworkReply): Promise<boolean> {
  const mac = reply.msg[128] ?? reply.msg[64];
  if (typeof mac !== 'string' || reply.body.length <= 8) return false;
  return hsm.verifyMac({
    key: { kind: 'key', keyBlock: zak },
    algorithm: NETWORK_MAC.algorithm,
    padding: NETWORK_MAC.padding,
    length: NETWORK_MAC.length,
    data: reply.body.toString('hex', 0, reply.body.length - 8),
    mac,
  });
}
