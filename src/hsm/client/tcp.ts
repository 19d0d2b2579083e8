/**
 * The HSM client that speaks the payShield host-command protocol over TCP (or TLS): to poskey's
 * own HSM service, or to a real payShield with a key-block LMK. Pooled, pipelined, per-request
 * deadlines, failover across addresses (transport.ts); HsmApi mapped to commands (codec.ts):
 *
 *   generateKey → A0 (+ BU for the 5-byte CMAC KCV of AES keys)
 *   importKey → A6 (TR-31 block or legacy cryptogram under a KEK), A4 (clear components)
 *   exportKey → A8                       checkValue, describeKey → BU
 *   translatePin → CA (TPK source), CC (ZPK source), G0 (DUKPT)
 *   generateMac → M6    verifyMac → M8 (error 01 resolves false)
 *   encryptData → M0    decryptData → M2
 *   generateSignInKeys → Y0 (poskey vendor command)    diagnostics → NC
 *   migrateKey, randomBytes, exportKeyTr34 → POSKEY_ERR_HSM_UNSUPPORTED (no host command)
 *
 * Results have the in-process shapes. Errors the HSM answers are HsmRemoteError
 * (POSKEY_ERR_HSM_<code>, `payShield` = the code). The `actor` argument of key-management calls is
 * not on the wire: the HSM audits the connection (its TLS client certificate, or address).
 */
import { constantTimeEqual, zeroize } from '../../crypto/bytes.js';
import { createKey } from '../../crypto/cipher.js';
import { assertCheckValue, type CheckValue } from '../../crypto/kcv.js';
import type {
  DataRequest,
  ExportKeyRequest,
  GeneratedKey,
  GenerateKeyRequest,
  HsmClient,
  ImportKeyRequest,
  KeyAlgorithm,
  KeyInfo,
  MacRequest,
  SignInKeys,
  SignInKeysRequest,
  TranslatePinRequest,
} from '../api.js';
import { HsmError } from '../errors.js';
import { defaultKcvMethod, KEY_ALGORITHMS } from '../key-types.js';
import {
  A0_RESPONSE,
  A4_RESPONSE,
  A6_RESPONSE,
  A8_RESPONSE,
  BU_RESPONSE,
  CA_RESPONSE,
  CC_RESPONSE,
  dataContext,
  defaultKcvMethodOfBlock,
  diagnosticsFromNc,
  encodeA0,
  encodeA4,
  encodeA6,
  encodeA8,
  encodeBU,
  encodeData,
  encodeM6,
  encodeM8,
  encodeTranslatePin,
  encodeY0,
  G0_RESPONSE,
  infoFromBlock,
  legacyExportSchemes,
  M0_RESPONSE,
  M2_RESPONSE,
  M6_RESPONSE,
  M8_RESPONSE,
  NC_RESPONSE,
  resolveKcvRequest,
  unsupported,
  Y0_RESPONSE,
} from './codec.js';
import { HsmRemoteError } from './errors.js';
import {
  defineResponse,
  type ResponseSpec,
  Transport,
  type TransportOptions,
  type TransportStats,
} from './transport.js';

export type { HsmAddress, ReconnectOptions, TransportStats } from './transport.js';

export type TcpClientOptions = TransportOptions;

/** HsmApi operations with no payShield host command, and why. */
export const UNSUPPORTED_OPERATIONS: Readonly<Record<string, string>> = Object.freeze({
  migrateKey: 'LMK migration is a console/BW job, not a command this HSM serves',
  randomBytes: 'no random-number host command is served',
  exportKeyTr34: 'TR-34 tokens are built by an HSM in the host process (no host command carries one)',
});

export interface RawResponse {
  errorCode: string;
  /** The fields after the error code, latin1. */
  fields: string;
}

/** The TCP client: HsmClient, plus the pool's counters and a raw command escape hatch. */
export type TcpHsmClient = HsmClient & {
  /** Resolves once a connection is up; POSKEY_ERR_HSM_UNAVAILABLE after connectTimeoutMs without one. */
  ready(): Promise<void>;
  /** Counters and connection states. */
  stats(): TransportStats;
  /** Sends any host command (body = latin1 text after the command code); every error code resolves. */
  command(code: string, body?: string): Promise<RawResponse>;
};

const RAW_SPECS = new Map<string, ResponseSpec<RawResponse, undefined>>();

function rawSpec(code: string): ResponseSpec<RawResponse, undefined> {
  let spec = RAW_SPECS.get(code);
  if (spec === undefined) {
    spec = defineResponse(code, (fields, errorCode) => ({ errorCode, fields }), 'any');
    RAW_SPECS.set(code, spec);
  }
  return spec;
}

const PIN_SPECS = { CA: CA_RESPONSE, CC: CC_RESPONSE, G0: G0_RESPONSE } as const;

/** payShield "invalid key scheme": the legacy export scheme did not fit the key's length. */
const INVALID_SCHEME = '26';

function kcvMismatch(field: string): HsmError {
  return new HsmError('POSKEY_ERR_KCV_MISMATCH', 'key check value does not match the key', {
    field,
    payShield: '01',
  });
}

/** Shortest KCV the HSM accepts on import. */
const MIN_KCV_BYTES = 2;

/**
 * Opens the pool (connections start at once) and returns the client.
 * @throws POSKEY_ERR_HSM_OPTION for invalid options
 */
export function createTcpClient(options: TcpClientOptions): TcpHsmClient {
  const t = new Transport(options);

  /** The API's default KCV of a key block: the 6-hex KCV a response carried, or BU for CMAC (5 bytes). */
  async function defaultKcv(keyBlock: string, kcv6: string): Promise<CheckValue> {
    if (defaultKcvMethodOfBlock(keyBlock) === 'legacy') return { value: kcv6, method: 'legacy', length: 3 };
    const full = await t.request(BU_RESPONSE, encodeBU(keyBlock, 8), undefined);
    return { value: full.slice(0, 10), method: 'cmac', length: 5 };
  }

  /** The first `bytes` of the default-method KCV of a key, from the 6-hex one when it is enough. */
  async function kcvBytes(keyBlock: string, kcv6: string, bytes: number): Promise<Buffer> {
    const hex = bytes <= 3 ? kcv6 : await t.request(BU_RESPONSE, encodeBU(keyBlock, 8), undefined);
    return Buffer.from(hex.slice(0, bytes * 2), 'hex');
  }

  async function info(keyBlock: string, algorithm: KeyAlgorithm, kcv6: string): Promise<KeyInfo> {
    return infoFromBlock(keyBlock, algorithm, await defaultKcv(keyBlock, kcv6));
  }

  async function generateKey(req: GenerateKeyRequest): Promise<GeneratedKey> {
    const plan = encodeA0(req);
    const out = await t.request(A0_RESPONSE, plan.body, plan.exported);
    const result: GeneratedKey = {
      keyBlock: out.keyBlock,
      info: await info(out.keyBlock, req.algorithm, out.kcv6),
    };
    if (req.exportUnder !== undefined && out.exported !== undefined) {
      result.exported = { format: req.exportUnder.format, cryptogram: out.exported };
    }
    return result;
  }

  /** A KCV the sender gave with a legacy cryptogram, checked against the imported key (as the HSM would). */
  async function checkGivenKcv(keyBlock: string, kcv6: string, given: unknown, algorithm: KeyAlgorithm) {
    const field = 'source.kcv';
    if (typeof given !== 'string' || !/^([0-9A-Fa-f]{2})+$/.test(given)) {
      throw new HsmError('POSKEY_ERR_HEX', 'must contain only hexadecimal characters', {
        field,
        payShield: '15',
      });
    }
    const want = Buffer.from(given, 'hex');
    const blockSize = KEY_ALGORITHMS[algorithm].cipher === 'aes' || algorithm === 'sm4' ? 16 : 8;
    if (want.length < MIN_KCV_BYTES || want.length > blockSize) {
      throw new HsmError('POSKEY_ERR_LENGTH', `a KCV is ${MIN_KCV_BYTES} to ${blockSize} bytes`, {
        field,
        payShield: '15',
      });
    }
    if (want.length > 8) throw unsupported('importKey', `checking a ${want.length}-byte KCV (BU gives 8)`);
    if (!constantTimeEqual(await kcvBytes(keyBlock, kcv6, want.length), want)) throw kcvMismatch(field);
  }

  /** Component KCVs are checked here, before sending: the caller holds the clear components anyway. */
  function checkComponentKcvs(components: unknown, kcvs: unknown, algorithm: KeyAlgorithm): void {
    if (kcvs === undefined) return;
    if (!Array.isArray(components) || !Array.isArray(kcvs) || kcvs.length !== components.length) {
      throw new HsmError('POSKEY_ERR_TYPE', 'must give one KCV per component', {
        field: 'source.kcvs',
        payShield: '15',
      });
    }
    const spec = KEY_ALGORITHMS[algorithm];
    components.forEach((c, i) => {
      const bytes = Buffer.from(String(c), 'hex');
      if (bytes.length !== spec.length || String(c).length !== spec.length * 2) {
        throw new HsmError(
          'POSKEY_ERR_LENGTH',
          `component is ${bytes.length} bytes, expected ${spec.length}`,
          {
            field: `source.components[${i}]`,
            payShield: '15',
          },
        );
      }
      const handle = createKey(spec.cipher, bytes);
      try {
        const kcv = kcvs[i];
        if (typeof kcv !== 'string' || kcv.length < MIN_KCV_BYTES * 2) {
          throw new HsmError('POSKEY_ERR_LENGTH', `a KCV is at least ${MIN_KCV_BYTES} bytes`, {
            field: `source.kcvs[${i}]`,
            payShield: '15',
          });
        }
        assertCheckValue(handle, kcv, defaultKcvMethod(algorithm), `source.kcvs[${i}]`);
      } finally {
        handle.destroy();
        zeroize(bytes);
      }
    });
  }

  async function importKey(req: ImportKeyRequest): Promise<{ keyBlock: string; info: KeyInfo }> {
    if (req === null || typeof req !== 'object' || req.source === null || typeof req.source !== 'object') {
      throw new HsmError('POSKEY_ERR_TYPE', 'must be an object', { field: 'source', payShield: '15' });
    }
    const src = req.source;
    const base = {
      keyType: req.keyType,
      algorithm: req.algorithm,
      exportability: req.exportability,
      lmkId: req.lmkId,
    };
    let out: { keyBlock: string; kcv6: string };
    if (src.kind === 'tr31') {
      out = await t.request(
        A6_RESPONSE,
        encodeA6({ ...base, kek: src.kek, key: { kind: 'tr31', block: src.block } }),
        undefined,
      );
    } else if (src.kind === 'legacy') {
      const body = encodeA6({ ...base, kek: src.kek, key: { kind: 'legacy', cryptogram: src.cryptogram } });
      out = await t.request(A6_RESPONSE, body, undefined);
      if (src.kcv !== undefined) await checkGivenKcv(out.keyBlock, out.kcv6, src.kcv, req.algorithm);
    } else if (src.kind === 'components') {
      const body = encodeA4({ ...base, components: src.components });
      checkComponentKcvs(src.components, src.kcvs, req.algorithm);
      out = await t.request(A4_RESPONSE, body, undefined);
    } else {
      throw new HsmError('POSKEY_ERR_TYPE', "must be 'tr31', 'legacy' or 'components'", {
        field: 'source.kind',
        payShield: '15',
      });
    }
    return { keyBlock: out.keyBlock, info: await info(out.keyBlock, req.algorithm, out.kcv6) };
  }

  async function exportKey(req: ExportKeyRequest) {
    if (req === null || typeof req !== 'object') {
      throw new HsmError('POSKEY_ERR_TYPE', 'must be an object', { field: 'request', payShield: '15' });
    }
    if (req.format !== 'tr31' && req.format !== 'legacy') {
      throw new HsmError('POSKEY_ERR_TYPE', "must be 'tr31' or 'legacy'", {
        field: 'format',
        payShield: '15',
      });
    }
    const schemes = req.format === 'tr31' ? ['R'] : legacyExportSchemes(String(req.keyBlock));
    for (let i = 0; ; i++) {
      try {
        const out = await t.request(A8_RESPONSE, encodeA8(req.keyBlock, req.kek, schemes[i]!), undefined);
        return {
          format: req.format,
          cryptogram: out.keyBlock,
          kcv: await defaultKcv(req.keyBlock, out.kcv6),
        };
      } catch (e) {
        // A TDES key block does not say whether it holds 2 or 3 keys: try X, then Y.
        const retry = e instanceof HsmRemoteError && e.payShield === INVALID_SCHEME && i + 1 < schemes.length;
        if (!retry) throw e;
      }
    }
  }

  async function checkValue(
    keyBlock: string,
    method?: CheckValue['method'],
    length?: number,
  ): Promise<CheckValue> {
    const want = resolveKcvRequest(keyBlock, method, length);
    const kcv = await t.request(BU_RESPONSE, encodeBU(keyBlock, want.length), undefined);
    return { value: kcv.slice(0, want.length * 2), method: want.method, length: want.length };
  }

  async function describeKey(keyBlock: string): Promise<KeyInfo> {
    if (typeof keyBlock !== 'string') {
      throw new HsmError('POSKEY_ERR_TYPE', 'must be an LMK key block', {
        field: 'keyBlock',
        payShield: '15',
      });
    }
    const letter = keyBlock[7];
    const algorithm: KeyAlgorithm | undefined = letter === 'D' ? 'des' : letter === '4' ? 'sm4' : undefined;
    if (algorithm === undefined) {
      // The block's length masks the key length: nothing on the wire tells TDES-2 from TDES-3, or
      // AES-128 from AES-256.
      throw unsupported('describeKey', `the key length of a '${letter}' key block`);
    }
    const { method, length } = resolveKcvRequest(keyBlock, undefined, undefined);
    const kcv = await t.request(BU_RESPONSE, encodeBU(keyBlock, length), undefined);
    return infoFromBlock(keyBlock, algorithm, { value: kcv.slice(0, length * 2), method, length });
  }

  function translatePin(req: TranslatePinRequest): Promise<string> {
    let plan: ReturnType<typeof encodeTranslatePin>;
    try {
      plan = encodeTranslatePin(req);
    } catch (e) {
      return Promise.reject(e);
    }
    return t.request(PIN_SPECS[plan.command], plan.body, undefined);
  }

  function generateMac(req: MacRequest): Promise<string> {
    let plan: ReturnType<typeof encodeM6>;
    try {
      plan = encodeM6(req);
    } catch (e) {
      return Promise.reject(e);
    }
    return t.request(M6_RESPONSE, plan.body, plan.shape);
  }

  function verifyMac(req: MacRequest & { mac: string }): Promise<boolean> {
    let plan: ReturnType<typeof encodeM8>;
    try {
      plan = encodeM8(req);
    } catch (e) {
      return Promise.reject(e);
    }
    return t.request(M8_RESPONSE, plan.body, plan.wrongLength);
  }

  function data(op: 'encryptData' | 'decryptData', req: DataRequest): Promise<string> {
    let body: string;
    try {
      body = encodeData(op, req);
    } catch (e) {
      return Promise.reject(e);
    }
    return t.request(op === 'encryptData' ? M0_RESPONSE : M2_RESPONSE, body, dataContext(req));
  }

  async function generateSignInKeys(req: SignInKeysRequest): Promise<SignInKeys> {
    return t.request(Y0_RESPONSE, encodeY0(req), req.withTdk === true);
  }

  async function diagnostics() {
    const nc = await t.request(NC_RESPONSE, '', undefined);
    const s = t.snapshot();
    const counters: Record<string, number> = {
      'client.sent': s.sent,
      'client.answered': s.answered,
      'client.timeouts': s.timeouts,
      'client.late': s.late,
      'client.retries': s.retries,
      'client.connects': s.connects,
      'client.inFlight': s.inFlight,
      'client.queued': s.queued,
    };
    return diagnosticsFromNc(nc, counters);
  }

  const client: TcpHsmClient = {
    generateKey,
    generateSignInKeys,
    importKey,
    exportKey,
    describeKey,
    checkValue,
    translatePin,
    generateMac,
    verifyMac,
    encryptData: (req) => data('encryptData', req),
    decryptData: (req) => data('decryptData', req),
    migrateKey: async () => {
      throw unsupported('migrateKey', 'LMK migration');
    },
    randomBytes: async () => {
      throw unsupported('randomBytes', 'random bytes');
    },
    exportKeyTr34: async () => {
      throw unsupported('exportKeyTr34', 'a TR-34 key token');
    },
    diagnostics,
    close: () => t.close(),
    ready: () => t.ready(),
    stats: () => t.snapshot(),
    command: async (code, body = '') => t.request(rawSpec(code), body, undefined),
  };
  return client;
}

/** One HSM address, for tools that talk to a single HSM (`poskey hsm diag`). */
export interface ConnectOptions extends Omit<TcpClientOptions, 'addresses'> {
  host: string;
  port: number;
}

/**
 * A TCP client to one HSM (or to several, given `addresses`), resolved once a connection is up, so
 * an unreachable HSM is reported at once rather than on the first request.
 * @throws POSKEY_ERR_HSM_OPTION, POSKEY_ERR_HSM_UNAVAILABLE (the client is closed again)
 */
export async function connectHsm(options: ConnectOptions | TcpClientOptions): Promise<TcpHsmClient> {
  const { host, port, ...rest } = options as ConnectOptions;
  const addresses =
    'addresses' in options && options.addresses !== undefined ? options.addresses : [{ host, port }];
  const client = createTcpClient({ ...rest, addresses });
  try {
    await client.ready();
  } catch (e) {
    await client.close();
    throw e;
  }
  return client;
}
