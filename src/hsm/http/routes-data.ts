/**
 * Data plane: TranslatePinData, GenerateMac, VerifyMac, EncryptData, DecryptData. Each names its
 * keys by id/alias/ARN; the table decides whether the key may be used (enabled, not pending
 * deletion, right role) and the HSM enforces the key block's own usage and mode of use again.
 * PINs cross this API only as encrypted PIN blocks.
 */
import type { MacPadding } from '../../crypto/mac.js';
import type { MacKeySource, MacRequest, PinSource } from '../api.js';
import { VerificationFailedError } from './errors.js';
import { DUKPT_KEY_TYPES, KEY_FAMILIES, MAC_ALGORITHMS, PIN_FORMATS } from './model.js';
import { BASE_ERRORS, hsmCall, type RouteDeps, type RouteSpec, usableKey } from './route.js';
import {
  decryptBody,
  decryptResponse,
  encryptBody,
  encryptResponse,
  generateMacBody,
  generateMacResponse,
  keyIdParams,
  translatePinBody,
  translatePinResponse,
  verifyMacBody,
  verifyMacResponse,
} from './schemas.js';

interface TranslatePinBody {
  incomingKeyIdentifier: string;
  outgoingKeyIdentifier: string;
  incomingPinBlockFormat: string;
  outgoingPinBlockFormat: string;
  primaryAccountNumber?: string;
  encryptedPinBlock: string;
  incomingDukptAttributes?: { keySerialNumber: string; dukptKeyDerivationType?: string };
}

interface MacBody {
  keyIdentifier: string;
  messageData: string;
  macAlgorithm: string;
  padding?: MacPadding;
  macLength?: number;
  unionPayOutput?: 'HEX' | 'BINARY';
  dukptAttributes?: { keySerialNumber: string; direction: 'REQUEST' | 'RESPONSE' };
}

interface DataBody {
  plainText?: string;
  cipherText?: string;
  mode: 'ECB' | 'CBC';
  initializationVector?: string;
}

/** HSM and PIN block field names → request field names (see `hsmCall`). */
const PIN_FIELDS = {
  source: 'incomingKeyIdentifier',
  'source.keyBlock': 'incomingKeyIdentifier',
  'source.bdk': 'incomingKeyIdentifier',
  'source.ksn': 'incomingDukptAttributes.keySerialNumber',
  'source.aes': 'incomingDukptAttributes.dukptKeyDerivationType',
  destination: 'outgoingKeyIdentifier',
  target: 'outgoingKeyIdentifier',
  pinBlock: 'encryptedPinBlock',
  block: 'encryptedPinBlock',
  pan: 'primaryAccountNumber',
  from: 'incomingPinBlockFormat',
  format: 'incomingPinBlockFormat',
  to: 'outgoingPinBlockFormat',
};

const MAC_FIELDS = {
  key: 'keyIdentifier',
  'key.keyBlock': 'keyIdentifier',
  'key.direction': 'dukptAttributes.direction',
  'source.bdk': 'keyIdentifier',
  'source.ksn': 'dukptAttributes.keySerialNumber',
  data: 'messageData',
  mac: 'mac',
  algorithm: 'macAlgorithm',
  length: 'macLength',
  padding: 'padding',
  output: 'unionPayOutput',
};

function translatePin(b: TranslatePinBody, deps: RouteDeps) {
  const dukpt = b.incomingDukptAttributes;
  const incoming = dukpt
    ? usableKey(
        deps,
        b.incomingKeyIdentifier,
        'incomingKeyIdentifier',
        KEY_FAMILIES.dukpt,
        'DUKPT PIN translation',
      )
    : usableKey(deps, b.incomingKeyIdentifier, 'incomingKeyIdentifier', KEY_FAMILIES.pin, 'PIN translation');
  const outgoing = usableKey(
    deps,
    b.outgoingKeyIdentifier,
    'outgoingKeyIdentifier',
    KEY_FAMILIES.pin,
    'PIN translation',
  );
  let source: PinSource = { kind: 'key', keyBlock: incoming.keyBlock };
  if (dukpt !== undefined) {
    const aes = dukpt.dukptKeyDerivationType;
    source = { kind: 'dukpt', bdk: incoming.keyBlock, ksn: dukpt.keySerialNumber };
    if (aes !== undefined) source.aes = { keyType: DUKPT_KEY_TYPES[aes]! };
  }
  const pinBlock = hsmCall(PIN_FIELDS, () =>
    deps.hsm.translatePin({
      source,
      destination: outgoing.keyBlock,
      pinBlock: b.encryptedPinBlock,
      fromFormat: PIN_FORMATS[b.incomingPinBlockFormat]!,
      toFormat: PIN_FORMATS[b.outgoingPinBlockFormat]!,
      pan: b.primaryAccountNumber ?? '',
    }),
  );
  return { pinBlock, keyArn: deps.arns.key(outgoing.id), keyCheckValue: outgoing.kcv };
}

/** The HSM MAC request for a body, and the key it names (for the response's ARN and KCV). */
function macRequest(b: MacBody, deps: RouteDeps) {
  const d = b.dukptAttributes;
  const key = d
    ? usableKey(deps, b.keyIdentifier, 'keyIdentifier', KEY_FAMILIES.dukpt, 'DUKPT MAC')
    : usableKey(deps, b.keyIdentifier, 'keyIdentifier', KEY_FAMILIES.mac, 'MAC');
  const source: MacKeySource = d
    ? {
        kind: 'dukpt',
        bdk: key.keyBlock,
        ksn: d.keySerialNumber,
        direction: d.direction === 'REQUEST' ? 'request' : 'response',
      }
    : { kind: 'key', keyBlock: key.keyBlock };
  const req: MacRequest = { key: source, algorithm: MAC_ALGORITHMS[b.macAlgorithm]!, data: b.messageData };
  if (b.padding !== undefined) req.padding = b.padding;
  if (b.macLength !== undefined) req.length = b.macLength;
  if (b.unionPayOutput !== undefined) req.output = b.unionPayOutput === 'HEX' ? 'hex' : 'binary';
  return { key, req };
}

function generateMac(b: MacBody, deps: RouteDeps) {
  const { key, req } = macRequest(b, deps);
  const mac = hsmCall(MAC_FIELDS, () => deps.hsm.generateMac(req));
  return { mac, keyArn: deps.arns.key(key.id), keyCheckValue: key.kcv };
}

function verifyMac(b: MacBody & { mac: string }, deps: RouteDeps) {
  const { key, req } = macRequest(b, deps);
  // The HSM compares in constant time; this layer only turns false into the AWS exception.
  const ok = hsmCall(MAC_FIELDS, () => deps.hsm.verifyMac({ ...req, mac: b.mac }));
  if (!ok) throw new VerificationFailedError('INVALID_MAC', 'MAC verification failed', 'mac');
  return { verified: true, keyArn: deps.arns.key(key.id), keyCheckValue: key.kcv };
}

function cipher(direction: 'encrypt' | 'decrypt', keyId: string, b: DataBody, deps: RouteDeps) {
  const key = usableKey(deps, keyId, 'keyId', KEY_FAMILIES.data, `data ${direction}ion`);
  const dataField = direction === 'encrypt' ? 'plainText' : 'cipherText';
  const req = {
    keyBlock: key.keyBlock,
    mode: b.mode === 'CBC' ? ('cbc' as const) : ('ecb' as const),
    data: (direction === 'encrypt' ? b.plainText : b.cipherText)!,
    ...(b.initializationVector === undefined ? {} : { iv: b.initializationVector }),
  };
  const fields = { data: dataField, iv: 'initializationVector', keyBlock: 'keyId', mode: 'mode' };
  const out = hsmCall(fields, () =>
    direction === 'encrypt' ? deps.hsm.encryptData(req) : deps.hsm.decryptData(req),
  );
  const base = { keyArn: deps.arns.key(key.id), keyCheckValue: key.kcv };
  return direction === 'encrypt' ? { cipherText: out, ...base } : { plainText: out, ...base };
}

const DATA_ERRORS = [...BASE_ERRORS, 404, 409, 503];

export const DATA_ROUTES: readonly RouteSpec[] = [
  {
    method: 'POST',
    url: '/pindata/translate',
    operationId: 'TranslatePinData',
    summary: 'Translate a PIN block between keys and formats (PEK→PEK, or DUKPT BDK+KSN→PEK)',
    tag: 'data',
    body: translatePinBody,
    response: translatePinResponse,
    errors: DATA_ERRORS,
    handler: (i, d) => translatePin(i.body as TranslatePinBody, d),
  },
  {
    method: 'POST',
    url: '/mac/generate',
    operationId: 'GenerateMac',
    summary: 'Generate a MAC (ISO 9797-1 alg 1/3, CMAC, UnionPay ECB; DUKPT optional)',
    tag: 'data',
    body: generateMacBody,
    response: generateMacResponse,
    errors: DATA_ERRORS,
    handler: (i, d) => generateMac(i.body as MacBody, d),
  },
  {
    method: 'POST',
    url: '/mac/verify',
    operationId: 'VerifyMac',
    summary: 'Verify a MAC: 200 {verified: true}, or VerificationFailedException reason INVALID_MAC',
    tag: 'data',
    body: verifyMacBody,
    response: verifyMacResponse,
    errors: DATA_ERRORS,
    handler: (i, d) => verifyMac(i.body as MacBody & { mac: string }, d),
  },
  {
    method: 'POST',
    url: '/keys/:keyId/encrypt',
    operationId: 'EncryptData',
    summary: 'Encrypt whole blocks of data with a data key (ECB or CBC)',
    tag: 'data',
    params: keyIdParams,
    body: encryptBody,
    response: encryptResponse,
    errors: DATA_ERRORS,
    handler: (i, d) => cipher('encrypt', i.params.keyId!, i.body as DataBody, d),
  },
  {
    method: 'POST',
    url: '/keys/:keyId/decrypt',
    operationId: 'DecryptData',
    summary: 'Decrypt whole blocks of data with a data key (ECB or CBC)',
    tag: 'data',
    params: keyIdParams,
    body: decryptBody,
    response: decryptResponse,
    errors: DATA_ERRORS,
    handler: (i, d) => cipher('decrypt', i.params.keyId!, i.body as DataBody, d),
  },
];
