/**
 * The data directory of `poskey start` and the small secrets it keeps there.
 *
 *   <data>/hsm/        the host side's HSM: development LMK (lmk.dev.sealed.json), audit.log,
 *                      HTTP key table, api-token (HTTP API bearer token)
 *   <data>/host/       the host's SQLite database (registry + journal), pan-hash.key, zone-keys.json
 *                      (ZPK/ZAK as host-LMK blocks), admin-token, admin-audit.log
 *   <data>/network/    the network's own HSM (its development LMK), ledger.sqlite (cards, PVK,
 *                      zone key blocks under the network LMK), zone.json (cryptograms + KCVs only)
 *   <data>/terminals/  one directory per demo terminal: the sealed PIN pad (pinpad.json), STAN,
 *                      batch and pending reversals
 *
 * The two HSMs are separate trust domains with separate LMKs; the ZMK components that join them
 * exist only in memory, on the first start.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PoskeyError } from '../errors.js';
import { writeFileAtomic } from '../hsm/seal.js';

export interface DataLayout {
  root: string;
  hsm: string;
  host: string;
  network: string;
  terminals: string;
  adminTokenFile: string;
  hsmTokenFile: string;
  adminAuditFile: string;
  panKeyFile: string;
}

export const DEFAULT_DATA_DIR = './data';

/** Default ports of `poskey start` (the host, network and HSM services' own defaults, and the admin API). */
export const DEFAULT_PORTS = Object.freeze({
  terminal: 5858,
  network: 5859,
  admin: 5860,
  hsmTcp: 1500,
  hsmHttp: 8443,
});

/** Environment variable the demo command reads the PIN pads' device secret from. */
export const DEMO_PINPAD_SECRET_ENV = 'POSKEY_PINPAD_SECRET';
/** The demo PIN pads' device secret. Public on purpose: demo pads protect nothing. */
export const DEMO_PINPAD_SECRET = 'poskey-demo-pinpad-secret';

/** Paths under a data directory (absolute). */
export function dataLayout(root: string = DEFAULT_DATA_DIR): DataLayout {
  const r = resolve(root);
  const host = join(r, 'host');
  const hsm = join(r, 'hsm');
  return {
    root: r,
    hsm,
    host,
    network: join(r, 'network'),
    terminals: join(r, 'terminals'),
    adminTokenFile: join(host, 'admin-token'),
    hsmTokenFile: join(hsm, 'api-token'),
    adminAuditFile: join(host, 'admin-audit.log'),
    panKeyFile: join(host, 'pan-hash.key'),
  };
}

/** Creates the directories (mode 0700). */
export async function makeLayout(layout: DataLayout): Promise<void> {
  for (const dir of [layout.hsm, layout.host, layout.network, layout.terminals]) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  }
}

const TOKEN_RE = /^[A-Za-z0-9._~+/=-]{16,512}$/;

/**
 * The bearer token kept in `path`, made (24 random bytes, base64url, file mode 0600) when absent,
 * so a restart keeps the token the banner showed.
 * @throws POSKEY_ERR_START_TOKEN when the file holds something that is not a token
 */
export async function ensureToken(path: string): Promise<string> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    if (!TOKEN_RE.test(text)) {
      throw new PoskeyError(
        'POSKEY_ERR_START_TOKEN',
        `${path} does not hold an API token (16+ token characters)`,
        {
          field: 'token',
        },
      );
    }
    return text;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const token = randomBytes(24).toString('base64url');
  await writeFileAtomic(path, `${token}\n`);
  return token;
}

/** The PAN hash key file (hex, 32 bytes), made when absent: PostgreSQL stores need one every process shares. */
export async function ensurePanKeyFile(path: string): Promise<string> {
  try {
    await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await writeFileAtomic(path, `${randomBytes(32).toString('hex')}\n`);
  }
  return path;
}
