/**
 * The HSM client for a host that runs the HSM in its own process. Thin, but it behaves like the
 * TCP client, so the host cannot tell them apart:
 * - every operation is asynchronous;
 * - errors keep the HSM's code, field and reason, and carry the payShield code the wire would have
 *   sent (`payShield`); a non-poskey error (a bug) is POSKEY_ERR_HSM_41, as over TCP;
 * - object results are copies the caller may keep or change, as decoded responses are;
 * - after close(), calls fail with POSKEY_ERR_HSM_CLOSED.
 */
import type { HsmApi, HsmClient } from '../api.js';
import { clientError, withPayShieldCode } from './errors.js';

export interface InProcessClientOptions {
  /** Audit actor for key-management calls that do not name one (default: the HSM's own default). */
  actor?: string;
}

/** Every operation of HsmApi; the Record type makes the compiler flag one that is missing. */
const OPERATIONS: Readonly<Record<keyof HsmApi, true>> = Object.freeze({
  generateKey: true,
  generateSignInKeys: true,
  importKey: true,
  exportKey: true,
  exportKeyTr34: true,
  describeKey: true,
  checkValue: true,
  translatePin: true,
  generateMac: true,
  verifyMac: true,
  encryptData: true,
  decryptData: true,
  migrateKey: true,
  randomBytes: true,
  diagnostics: true,
});

/** Operations whose last parameter is the audit actor, and that parameter's position. */
const ACTOR_POSITION: Readonly<Partial<Record<keyof HsmApi, number>>> = Object.freeze({
  generateKey: 1,
  generateSignInKeys: 1,
  importKey: 1,
  exportKey: 1,
  exportKeyTr34: 1,
  migrateKey: 2,
});

/**
 * Wraps an HSM running in this process as an HsmClient.
 * @param hsm the HSM (`new Hsm(...)` from src/hsm/hsm.ts, or anything implementing HsmApi)
 */
export function createInProcessClient(hsm: HsmApi, options: InProcessClientOptions = {}): HsmClient {
  let closed = false;
  const client: Record<string, unknown> = {};
  for (const op of Object.keys(OPERATIONS) as (keyof HsmApi)[]) {
    const method = hsm[op] as (...args: unknown[]) => unknown;
    if (typeof method !== 'function') {
      throw clientError('POSKEY_ERR_HSM_OPTION', `the HSM has no ${op} operation`, { field: 'hsm' });
    }
    const actorAt = ACTOR_POSITION[op];
    client[op] = async (...args: unknown[]): Promise<unknown> => {
      if (closed) throw clientError('POSKEY_ERR_HSM_CLOSED', 'the HSM client is closed', { field: op });
      if (actorAt !== undefined && options.actor !== undefined && args[actorAt] === undefined) {
        args[actorAt] = options.actor;
      }
      let result: unknown;
      try {
        result = method.apply(hsm, args);
      } catch (e) {
        throw withPayShieldCode(e, op);
      }
      return result !== null && typeof result === 'object' ? structuredClone(result) : result;
    };
  }
  client.close = async (): Promise<void> => {
    closed = true;
  };
  return client as HsmClient;
}
