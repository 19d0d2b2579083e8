/**
 * Conventions of the host ↔ card-network link (the `network` dialect, ISO 8583:1987 with ASCII
 * numerics): which field carries the MAC and what it covers, and how a PIN travels. Both the host's
 * network link and the network simulator use these. See docs/network-link.md.
 */
import { getDialect, type IsoMessage, pack } from '../iso8583/index.js';

export const NETWORK_DIALECT = getDialect('network');

/** The MAC algorithm on the link: ISO 9797-1 algorithm 3 (X9.19 retail MAC), padding 1, 8 bytes, under the ZAK. */
export const NETWORK_MAC = Object.freeze({ algorithm: 'retail', padding: 1, length: 8 } as const);

/** PIN blocks on the link: ISO 9564 format 0 under the ZPK (SM4 keys: the 16-byte SM4 block). */
export const NETWORK_PIN_FORMAT = 0;

const ZERO_MAC = '0000000000000000';

/**
 * The link MACs in field 128 (secondary bitmap) by default; a message that carries its MAC in 64
 * instead (a peer that never uses the secondary bitmap) keeps it there.
 */
export function macField(msg: IsoMessage): 64 | 128 {
  return msg[64] !== undefined && msg[128] === undefined ? 64 : 128;
}

/** The MAC block: the packed message with a placeholder MAC in its MAC field, less the last 8 bytes. */
export function networkMacBlock(msg: IsoMessage): Buffer {
  const field = macField(msg);
  const { 64: _a, 128: _b, ...rest } = msg;
  const packed = pack(NETWORK_DIALECT, { ...rest, [field]: ZERO_MAC } as IsoMessage);
  return packed.subarray(0, packed.length - 8);
}

/** Packs `msg` with `mac` (16 hex) in its MAC field. */
export function packNetworkWithMac(msg: IsoMessage, mac: string): Buffer {
  const { 64: _a, 128: _b, ...rest } = msg;
  return pack(NETWORK_DIALECT, { ...rest, [macField(msg)]: mac } as IsoMessage);
}
