/**
 * Fleet provisioning with no human step: every simulated terminal gets a device certificate from
 * the lab vendor CA for its PIN pad serial, then loads its own TMK over remote key loading
 * (rkl-client.ts). Plugs into `runFleet` as its `provision` function.
 */
import { type CertificateAuthority, issueCertificate } from '../keyload/ca.js';
import type { ProvisionFn } from './fleet.js';
import type { MasterKeyAlgorithm } from './pinpad.js';
import { runRkl } from './rkl-client.js';

export interface RklProvisionOptions {
  /** The host's RKL listener. */
  url: string;
  tlsCa?: string | Buffer;
  /** The lab vendor CA that certifies the simulated devices (its root is the KDH's trust anchor too). */
  vendorCa: CertificateAuthority;
  mid: string;
  algorithm: MasterKeyAlgorithm;
  /** Registers the TID with the device serial first, when the host does not know the fleet yet. */
  register?: (tid: string, serial: string) => Promise<void>;
}

/** The serial runFleet gives the PIN pad of `tid`. */
export const simulatedSerial = (tid: string): string => `SIM-${tid}`;

export function rklProvision(o: RklProvisionOptions): ProvisionFn {
  return async (tid) => {
    const serial = simulatedSerial(tid);
    await o.register?.(tid, serial);
    const { cert, privateKey } = issueCertificate(o.vendorCa, {
      role: 'krd',
      cn: 'PINPAD',
      deviceSerial: serial,
    });
    return {
      tid,
      mid: o.mid,
      config: { algorithm: o.algorithm },
      tmk: {
        kind: 'device',
        load: (pad, slot) =>
          runRkl({
            url: o.url,
            tid,
            pad,
            krd: { cert, privateKey: privateKey! },
            vendorCa: o.vendorCa.cert,
            algorithm: o.algorithm,
            slot,
            ...(o.tlsCa === undefined ? {} : { tlsCa: o.tlsCa }),
          }),
      },
    };
  };
}
