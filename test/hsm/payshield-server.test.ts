/**
 * The payShield TCP server on 127.0.0.1 with a real Hsm: the pythales wire example, pipelining,
 * isolation between clients, header lengths, limits, logging, and mutual TLS.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PoskeyError } from '../../src/errors.js';
import type { HsmApi } from '../../src/hsm/api.js';
import type { Hsm } from '../../src/hsm/hsm.js';
import { encodePayShieldFrame } from '../../src/hsm/payshield/framing.js';
import { createPayShieldServer, type PayShieldLogger } from '../../src/hsm/payshield/server.js';
import {
  closeEverything,
  makeHsm,
  splitResponse,
  startServer,
  TestClient,
  track,
} from './payshield-helpers.js';

let hsm: Hsm;
before(() => {
  hsm = makeHsm();
});
after(closeEverything);

/** A logger that keeps every record as JSON text. */
function recordingLogger(): PayShieldLogger & { lines: string[] } {
  const lines: string[] = [];
  const rec = (level: string) => (obj: object, msg?: string) => {
    lines.push(JSON.stringify({ level, ...obj, msg }));
  };
  return { lines, info: rec('info'), warn: rec('warn'), error: rec('error'), debug: rec('debug') };
}

const until = async (cond: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('payShield server', () => {
  it('pythales README example: 00 06 SSSS NC → 00 21 SSSS ND 00 <16 H LMK KCV> <9-character firmware>', async () => {
    const { server, port } = await startServer({ hsm });
    const c = await TestClient.connect(port);
    const [r] = await c.sendRaw(Buffer.from([0x00, 0x06, ...Buffer.from('SSSSNC', 'latin1')]), 1);
    assert.equal(r!.length, 0x21);
    const text = r!.toString('latin1');
    assert.equal(text.slice(0, 8), 'SSSSND00');
    assert.equal(text.slice(8, 24), hsm.diagnostics().lmks[0]!.kcv.padEnd(16, '0'));
    assert.equal(text.slice(24).trim(), hsm.diagnostics().version);
    await c.close();
    await server.close();
  });

  it('answers 100 pipelined requests sent in one write, in order, and counts them', async () => {
    const { server, port } = await startServer({ hsm });
    const c = await TestClient.connect(port);
    const requests = Array.from(
      { length: 100 },
      (_, i) => `${String(i).padStart(4, '0')}B20004${String(i).padStart(4, '0')}`,
    );
    const responses = await c.sendMany(requests);
    assert.equal(responses.length, 100);
    responses.forEach((r, i) => {
      const id = String(i).padStart(4, '0');
      assert.equal(r.toString('latin1'), `${id}B300${id}`);
    });
    assert.equal(server.stats().commands.B2, 100);
    await c.close();
    await server.close();
  });

  it('a client sending garbage gets error codes, then is cut off by an oversize frame; another client carries on', async () => {
    const { server, port } = await startServer({ hsm, maxFrameSize: 512 });
    const good = await TestClient.connect(port);
    const bad = await TestClient.connect(port);
    const garbage = await bad.sendMany(['HDR1CA\xff\xfe', 'HDR1', 'HDR1zz', 'HDR1M6999', 'HDR1A0']);
    assert.deepEqual(
      garbage.map((r) => {
        const s = splitResponse(r);
        return `${s.code}${s.error}`;
      }),
      ['CB26', 'ZZ15', 'ZZ15', 'M702', 'A115'],
    );
    assert.equal((await good.command('B20002OK')).body, 'OK');
    // 0x0400 announced: more than maxFrameSize; the stream cannot be resynchronised.
    bad.socket.write(Buffer.from([0x04, 0x00, 0x41]));
    await bad.closed;
    assert.equal(server.stats().frameErrors, 1);
    const after = await good.sendMany(['HDR1B20001A', 'HDR1NC']);
    assert.equal(splitResponse(after[0]!).body, 'A');
    assert.equal(splitResponse(after[1]!).error, '00');
    await good.close();
    await server.close();
  });

  it('echoes headers of 0, 2 and 8 characters; a frame shorter than the header is 51', async () => {
    for (const headerLength of [0, 2, 8]) {
      const { server, port } = await startServer({ hsm, headerLength });
      const c = await TestClient.connect(port);
      const header = 'H'.repeat(headerLength);
      const r = splitResponse(await c.send(`${header}B20003abc`), headerLength);
      assert.deepEqual(r, { header, code: 'B3', error: '00', body: 'abc' });
      if (headerLength > 0) {
        const short = (await c.send('X')).toString('latin1');
        assert.equal(short, 'XZZ51');
      }
      await c.close();
      await server.close();
    }
  });

  it('refuses connections over maxConnections and closes idle ones', async () => {
    const { server, port } = await startServer({ hsm, maxConnections: 1, idleTimeoutMs: 150 });
    const first = await TestClient.connect(port);
    const second = await TestClient.connect(port);
    await second.closed;
    assert.equal(server.stats().refused, 1);
    assert.equal((await first.command('B20001x')).body, 'x');
    await first.closed; // idle for 150 ms
    await until(() => server.stats().connections === 0);
    await server.close();
  });

  it('logs command and error codes, never PANs, PIN blocks or key blocks', async () => {
    const logger = recordingLogger();
    const { server, port } = await startServer({ hsm, logger });
    const c = await TestClient.connect(port);
    const { keyBlock } = hsm.generateKey({ keyType: 'TPK', algorithm: 'tdes2' });
    const zpk = hsm.generateKey({ keyType: 'ZPK', algorithm: 'tdes2' }).keyBlock;
    const pinBlock = '0123456789ABCDEF';
    const account = '987654321098';
    const r = await c.command(`CAS${keyBlock}S${zpk}12${pinBlock}0101${account}`);
    assert.notEqual(r.error, '00');
    await c.close();
    await server.close();
    const text = logger.lines.join('\n');
    assert.match(text, /"command":"CA"/);
    for (const secret of [pinBlock, account, keyBlock.slice(20, 60), zpk.slice(20, 60)]) {
      assert.ok(!text.includes(secret), 'log must not contain request content');
    }
  });

  it('an HSM failure is 41 and logged as an error; the connection carries on', async () => {
    const logger = recordingLogger();
    const broken: HsmApi = new Proxy(hsm as HsmApi, {
      get(target, prop, receiver) {
        if (prop === 'diagnostics')
          return () => {
            throw new Error('disk on fire');
          };
        return Reflect.get(target, prop, receiver);
      },
    });
    const { server, port } = await startServer({ hsm: broken as Hsm, logger });
    const c = await TestClient.connect(port);
    assert.equal((await c.command('NC')).error, '41');
    assert.equal((await c.command('B20001y')).body, 'y');
    assert.ok(logger.lines.some((l) => l.includes('"level":"error"') && l.includes('"errorCode":"41"')));
    assert.equal(server.stats().errors['41'], 1);
    await c.close();
    await server.close();
  });

  it('a client that does not read is paused, then served in full when it reads again', async () => {
    const { server, port } = await startServer({ hsm });
    const socket = track(netConnect({ port, host: '127.0.0.1' }));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.pause();
    const message = 'x'.repeat(60_000);
    const frame = encodePayShieldFrame(Buffer.from(`HDR1B2EA60${message}`, 'latin1'));
    const n = 300; // 18 MB of responses: more than the socket buffers hold
    socket.write(Buffer.concat(Array.from({ length: n }, () => frame)));
    await new Promise((r) => setTimeout(r, 300));
    const answeredWhilePaused = server.stats().commands.B2 ?? 0;
    assert.ok(answeredWhilePaused < n, `server kept reading: ${answeredWhilePaused} answered`);
    let received = 0;
    socket.on('data', (d: Buffer) => {
      received += d.length;
    });
    socket.resume();
    await until(() => received === n * (2 + 8 + message.length), 20_000);
    assert.equal(server.stats().commands.B2, n);
    socket.destroy();
    await server.close();
  });

  it('rejects bad options and a busy port with typed errors', async () => {
    assert.throws(
      () => createPayShieldServer({ hsm, headerLength: 300 }),
      (e) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_PAYSHIELD_OPTION',
    );
    assert.throws(
      () => createPayShieldServer({ hsm, maxFrameSize: 70_000 }),
      (e) => e instanceof PoskeyError && e.field === 'maxFrameSize',
    );
    assert.throws(
      () => createPayShieldServer({ hsm: undefined as unknown as HsmApi }),
      (e) => e instanceof PoskeyError && e.field === 'hsm',
    );
    const { server, port } = await startServer({ hsm });
    const clash = createPayShieldServer({ hsm, port });
    await assert.rejects(
      clash.listen(),
      (e) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_PAYSHIELD_LISTEN',
    );
    await server.close();
  });
});

describe('payShield server over mutual TLS', () => {
  let dir: string | undefined;
  let pem: Record<string, Buffer> = {};
  // The certificates come from the openssl command line tool, which .ci/run installs when missing.
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'poskey-tls-'));
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    const key = (name: string) =>
      ssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`);
    key('ca');
    ssl(
      'req',
      '-x509',
      '-new',
      '-key',
      'ca.key',
      '-subj',
      '/CN=poskey test CA',
      '-days',
      '1',
      '-out',
      'ca.pem',
    );
    const leaf = (name: string, cn: string, ext: string, signer: 'ca' | 'self') => {
      key(name);
      if (signer === 'self') {
        ssl(
          'req',
          '-x509',
          '-new',
          '-key',
          `${name}.key`,
          '-subj',
          `/CN=${cn}`,
          '-days',
          '1',
          '-out',
          `${name}.pem`,
        );
        return;
      }
      ssl('req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`);
      ssl(
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-days',
        '1',
        '-extfile',
        ext,
        '-out',
        `${name}.pem`,
      );
    };
    execFileSync(
      'sh',
      [
        '-c',
        'printf "subjectAltName=IP:127.0.0.1\\n" > server.ext; printf "extendedKeyUsage=clientAuth\\n" > client.ext',
      ],
      { cwd: dir },
    );
    leaf('server', 'localhost', 'server.ext', 'ca');
    leaf('client', 'posp-01', 'client.ext', 'ca');
    leaf('rogue', 'rogue', '', 'self');
    for (const f of [
      'ca.pem',
      'server.key',
      'server.pem',
      'client.key',
      'client.pem',
      'rogue.key',
      'rogue.pem',
    ]) {
      pem[f] = readFileSync(join(dir, f));
    }
  });

  after(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    pem = {};
  });

  it('accepts a client with a certificate from the CA and refuses one without or with a foreign one', async () => {
    const logger = recordingLogger();
    const { server, port } = await startServer({
      hsm,
      logger,
      tls: { key: pem['server.key']!, cert: pem['server.pem']!, ca: pem['ca.pem']! },
    });
    const base = { ca: pem['ca.pem']! };
    const good = await TestClient.connect(port, {
      ...base,
      key: pem['client.key']!,
      cert: pem['client.pem']!,
    });
    const r = await good.command('B20003tls');
    assert.deepEqual([r.code, r.error, r.body], ['B3', '00', 'tls']);
    assert.ok(logger.lines.some((l) => l.includes('posp-01@127.0.0.1')));
    await good.close();

    const refused = async (opts: object) => {
      try {
        const c = await TestClient.connect(port, { ...base, ...opts });
        // TLS 1.3: the server's refusal can arrive after the client's handshake completes.
        await assert.rejects(c.command('B20001x'));
      } catch (e) {
        assert.ok(e instanceof Error);
      }
    };
    await refused({});
    await refused({ key: pem['rogue.key']!, cert: pem['rogue.pem']! });
    assert.ok(logger.lines.some((l) => l.includes('TLS handshake refused')));
    await server.close();
  });
});
