/**
 * Store-and-forward and crash recovery, everything real (raw terminal → host → network simulator,
 * the store on SQLite and on PostgreSQL):
 * - a terminal reversal of an approved purchase (and of a void) is reversed at the network once;
 * - a reversal of an unknown original is acknowledged; a declined original is not sent on;
 * - a network timeout: 98 to the terminal, the request in doubt, the reversal applied once the
 *   network answers again; a refund advice that cannot reach the network is queued and forwarded;
 * - a queue entry pending at shutdown is delivered by the next host process on a reopened store;
 * - an in-doubt row left by a crash (written directly) is reversed once on start, however often
 *   the host starts;
 * - the network down for 10 s during a load of purchases: every transaction either approved (and
 *   in the ledger) or declined and not standing at the network, and the balance adds up;
 * - negative paths: a 0430 whose MAC does not verify, of another MTI, or without 39, and 96, keep
 *   the entry queued; the queue refuses entries carrying card data.
 */
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { NetworkLink } from '../../src/host/network-link.js';
import { createHostServer, type HostServer } from '../../src/host/server.js';
import {
  buildFrame,
  createFrameDecoder,
  type IsoMessage,
  NETWORK_PROFILE,
  pack,
  unpack,
} from '../../src/iso8583/index.js';
import { NETWORK_DIALECT } from '../../src/protocol/network-link.js';
import type { Dialect, Repository } from '../../src/store/types.js';
import {
  assertPostgresReachable,
  postgresFixture,
  type StoreFixture,
  sqliteFixture,
} from '../store/helpers.js';
import {
  CARDS,
  eventually,
  MID,
  packMaced,
  purchaseMessage,
  type RawKeys,
  RawTerminal,
  rawSignIn,
  startWorld,
  swipe,
  type World,
} from './helpers.js';

const silent = pino({ level: 'silent' });
/** Short back-off so retries happen within a test. */
const SAF = { retryMin: 100, retryMax: 400, poll: 50 };

type Card = { pan: string; expiry: string };

function followUp(
  tid: string,
  stan: number,
  kind: { mti: string; f3: string; f601: string },
  card: Card,
  amount: number,
  original: { stan: number; rrn: string },
): IsoMessage {
  const msg = purchaseMessage(tid, String(stan).padStart(6, '0'), { ...card, amount });
  msg[0] = kind.mti;
  msg[3] = kind.f3;
  msg[60] = { 1: kind.f601, 2: '000001', 3: '000' };
  msg[37] = original.rrn;
  msg[61] = { 1: '000001', 2: String(original.stan).padStart(6, '0'), 3: '1207' };
  return msg;
}

const VOID = { mti: '0200', f3: '200000', f601: '23' };
const REFUND = { mti: '0220', f3: '200000', f601: '25' };

/** The terminal's 0400 for the request it sent with `stan`. */
function reversalOf(original: IsoMessage, reason = '98'): IsoMessage {
  return {
    0: '0400',
    2: original[2],
    3: original[3],
    4: original[4],
    11: original[11],
    14: original[14],
    22: '022',
    25: '00',
    39: reason,
    41: original[41],
    42: MID,
    49: '156',
    60: original[60],
  } as IsoMessage;
}

async function session(w: World, tid: string) {
  const t = await w.register(tid);
  const raw = await RawTerminal.connect(w.port);
  const { keys } = await rawSignIn(raw, t, '000001');
  let stan = 1;
  const send = async (make: (stan: number) => IsoMessage, k: RawKeys = keys) => {
    const s = ++stan;
    const msg = make(s);
    const reply = await raw.exchange(packMaced(msg, k), 10_000);
    return { stan: s, sent: msg, msg: reply.msg };
  };
  return { t, raw, keys, send };
}

async function rowOf(store: Repository, tid: string, stan: number, mti = '0200') {
  const row = await store.journal.get(tid, 1, stan, mti);
  assert.ok(row, `journal row ${tid}/${stan}/${mti}`);
  return row;
}

async function safDone(store: Repository, journalId: string, ms = 10_000): Promise<void> {
  await eventually(async () => {
    const entries = await store.saf.list({ journalId });
    return entries.length === 1 && entries[0]!.state === 'done';
  }, ms);
}

function safSuite(dialect: Dialect, makeFixture: () => Promise<StoreFixture>): void {
  describe(`store-and-forward on ${dialect}`, { timeout: 240_000 }, () => {
    let w: World;
    let seq = 0;
    const tid = () => `F${String(++seq).padStart(7, '0')}`;
    const balance = (card: Card = CARDS.good) => w.network.ledger.balanceOf(card.pan);

    before(async () => {
      if (dialect === 'postgres') await assertPostgresReachable();
      w = await startWorld(await makeFixture(), { host: { saf: SAF } });
    });
    after(async () => {
      await w?.close();
    });

    it('reverses an approved purchase at the network once; a repeated reversal changes nothing', async () => {
      const { t, raw, send } = await session(w, tid());
      try {
        const start = balance();
        const sale = await send((s) =>
          purchaseMessage(t.tid, String(s).padStart(6, '0'), { ...CARDS.good, amount: 250 }),
        );
        assert.equal(sale.msg[39], '00');
        assert.equal(balance(), start - 250);
        const ack = await send(() => reversalOf(sale.sent));
        assert.equal(ack.msg[0], '0410');
        assert.equal(ack.msg[39], '00');
        const original = await rowOf(w.store, t.tid, sale.stan);
        assert.equal(original.status, 'reversed', 'reversed in the journal before the 0410');
        await safDone(w.store, original.id);
        assert.equal(balance(), start, 'credited back');
        const [entry] = await w.store.saf.list({ journalId: original.id });
        assert.equal(entry!.kind, 'reversal');
        assert.equal(entry!.mti, '0420');
        assert.equal(entry!.responseCode, '00');
        assert.equal(entry!.message['39'], '98', "the terminal's reason");
        assert.equal(entry!.message['2'], undefined, 'no PAN in the queue');
        const auth = w.network.ledger.findAuthorisation({
          acquirerId: w.config.acquirerId,
          stan: entry!.networkStan,
          rrn: entry!.rrn,
        });
        assert.equal(auth?.mti, '0420');
        // The terminal repeats its reversal: acknowledged, nothing queued again.
        const again = await send(() => reversalOf(sale.sent));
        assert.equal(again.msg[39], '00');
        await w.server.saf.drained(5000);
        assert.equal((await w.store.saf.list({ journalId: original.id })).length, 1);
        assert.equal(balance(), start, 'credited once');
      } finally {
        raw.close();
      }
    });

    it('reverses a void at the network: the credit taken back once, the sale approved again', async () => {
      const { t, raw, send } = await session(w, tid());
      try {
        const start = balance();
        const sale = await send((s) =>
          purchaseMessage(t.tid, String(s).padStart(6, '0'), { ...CARDS.good, amount: 700 }),
        );
        const rrn = sale.msg[37] as string;
        const v = await send((s) => followUp(t.tid, s, VOID, CARDS.good, 700, { stan: sale.stan, rrn }));
        assert.equal(v.msg[39], '00');
        assert.equal(balance(), start);
        const ack = await send(() => reversalOf(v.sent, '96'));
        assert.equal(ack.msg[39], '00');
        const voidRow = await rowOf(w.store, t.tid, v.stan);
        await safDone(w.store, voidRow.id);
        assert.equal(balance(), start - 700, 're-debited');
        assert.equal((await rowOf(w.store, t.tid, sale.stan)).status, 'approved');
        assert.equal((await rowOf(w.store, t.tid, v.stan)).status, 'reversed');
      } finally {
        raw.close();
      }
    });

    it('acknowledges a reversal of an unknown original, and sends none for a declined one', async () => {
      const { t, raw, send } = await session(w, tid());
      try {
        const ghost = purchaseMessage(t.tid, '000777', { ...CARDS.good, amount: 5 });
        const ack = await send(() => reversalOf(ghost));
        assert.equal(ack.msg[39], '00');
        const low = await send((s) =>
          purchaseMessage(t.tid, String(s).padStart(6, '0'), { ...CARDS.low, amount: 999_999 }),
        );
        assert.equal(low.msg[39], '51');
        assert.equal((await send(() => reversalOf(low.sent))).msg[39], '00');
        const declined = await rowOf(w.store, t.tid, low.stan);
        assert.equal((await w.store.saf.list({ journalId: declined.id })).length, 0);
        assert.equal(declined.status, 'declined');
      } finally {
        raw.close();
      }
    });

    it('declines with 98 on a network timeout and reverses the request once the network answers again', async () => {
      const { t, raw, send } = await session(w, tid());
      try {
        const start = balance();
        w.network.simulator.setFaults({ dropRate: 1 });
        const sale = await send((s) =>
          purchaseMessage(t.tid, String(s).padStart(6, '0'), { ...CARDS.good, amount: 330 }),
        );
        assert.equal(sale.msg[39], '98');
        const row = await rowOf(w.store, t.tid, sale.stan);
        assert.equal(row.status, 'in_doubt');
        assert.equal(row.responseCode, '98');
        const [entry] = await w.store.saf.list({ journalId: row.id });
        assert.equal(entry?.state, 'pending', 'queued before the reply');
        assert.equal(entry?.message['39'], '98');
        // The reversal's own answers are lost too: it stays queued and is retried.
        await eventually(async () => ((await w.store.saf.get(entry!.id))?.attempts ?? 0) >= 2, 8000);
        assert.equal((await w.store.saf.get(entry!.id))?.state, 'pending');
        w.network.simulator.setFaults({});
        await safDone(w.store, row.id);
        assert.equal(balance(), start, 'reversed once');
        assert.equal((await rowOf(w.store, t.tid, sale.stan)).status, 'reversed');
      } finally {
        w.network.simulator.setFaults({});
        raw.close();
      }
    });

    it('queues a refund advice the network does not answer, answers 00, and forwards it once', async () => {
      const { t, raw, send } = await session(w, tid());
      try {
        const start = balance();
        const sale = await send((s) =>
          purchaseMessage(t.tid, String(s).padStart(6, '0'), { ...CARDS.good, amount: 900 }),
        );
        const rrn = sale.msg[37] as string;
        w.network.simulator.setFaults({ dropRate: 1 });
        const refund = await send((s) =>
          followUp(t.tid, s, REFUND, CARDS.good, 400, { stan: sale.stan, rrn }),
        );
        assert.equal(refund.msg[0], '0230');
        assert.equal(refund.msg[39], '00');
        const row = await rowOf(w.store, t.tid, refund.stan, '0220');
        assert.equal(row.networkOutcome, 'queued');
        const [entry] = await w.store.saf.list({ journalId: row.id });
        assert.equal(entry?.kind, 'advice');
        assert.equal(entry?.message['2'], undefined, 'no PAN stored');
        assert.equal(entry?.message['35'], undefined, 'no track stored');
        w.network.simulator.setFaults({});
        await safDone(w.store, row.id);
        assert.equal(balance(), start - 900 + 400, 'refunded once (the dropped first attempt was replayed)');
        const after = await rowOf(w.store, t.tid, refund.stan, '0220');
        assert.equal(after.networkOutcome, 'approved');
      } finally {
        w.network.simulator.setFaults({});
        raw.close();
      }
    });

    it('keeps an entry queued on a 0430 with a bad MAC, another MTI, no 39 or 96', async () => {
      // A fake network on its own port: answers each 0420 in one of the wrong ways, in turn.
      const answers: ((m: IsoMessage) => Buffer)[] = [
        (m) => pack(NETWORK_DIALECT, { 0: '0430', 11: m[11], 37: m[37], 39: '00', 128: '0000000000000000' }),
        (m) => pack(NETWORK_DIALECT, { 0: '0410', 11: m[11], 37: m[37], 39: '00', 128: '0000000000000000' }),
        (m) => pack(NETWORK_DIALECT, { 0: '0430', 11: m[11], 37: m[37], 128: '0000000000000000' }),
      ];
      const seen: IsoMessage[] = [];
      const sockets = new Set<Socket>();
      const fake = createServer((socket) => {
        sockets.add(socket);
        const decoder = createFrameDecoder(NETWORK_PROFILE);
        socket.on('data', (chunk: Buffer) => {
          for (const frame of decoder.push(chunk)) {
            const m = unpack(NETWORK_DIALECT, frame);
            seen.push(m);
            const answer = answers[(seen.length - 1) % answers.length]!;
            socket.write(buildFrame({ body: answer(m) }, NETWORK_PROFILE));
          }
        });
        socket.on('error', () => undefined);
      });
      await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
      const port = (fake.address() as { port: number }).port;
      const link = new NetworkLink({
        host: '127.0.0.1',
        port,
        timeoutMs: 500,
        reconnectMinMs: 20,
        log: silent,
      });
      link.start();
      // Its own store: the world's sender must not take the entry to the real network.
      const fx = await makeFixture();
      const store = await fx.open();
      const server = createHostServer({
        config: { ...w.config, port: 0, saf: SAF },
        hsm: w.client,
        store,
        zone: w.zone,
        link,
        logger: silent,
      });
      try {
        const id = await store.saf.enqueue({
          kind: 'reversal',
          journalId: store.journal.newId(),
          mti: '0420',
          networkStan: '123456',
          rrn: '612345678901',
          message: {
            0: '0420',
            3: '000000',
            4: '000000000100',
            11: '123456',
            32: w.config.acquirerId,
            37: '612345678901',
            49: '156',
          },
        });
        assert.ok(id);
        await server.listen();
        await eventually(() => seen.length >= 3, 8000);
        const entry = await store.saf.get(id);
        assert.equal(entry?.state, 'pending');
        assert.ok((entry?.attempts ?? 0) >= 2);
        assert.ok(entry?.lastError, 'the reason is kept');
        assert.equal(seen[0]![0], '0420');
        assert.equal(seen[1]![11], '123456', 'every attempt has the same STAN');
      } finally {
        await server.close();
        await link.close();
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => fake.close(() => r()));
        await fx.cleanup();
      }
    });

    it('refuses queue entries carrying card data, or malformed', async () => {
      const base = {
        kind: 'reversal' as const,
        journalId: w.store.journal.newId(),
        mti: '0420',
        networkStan: '000001',
        rrn: '600000000001',
        message: { 0: '0420' },
      };
      for (const [field, bad] of [
        ['message', { ...base, message: { 0: '0420', 2: CARDS.good.pan } }],
        ['message', { ...base, message: { 0: '0420', 35: swipe(CARDS.good).track2 } }],
        ['kind', { ...base, kind: 'other' }],
        ['networkStan', { ...base, networkStan: '1' }],
        ['rrn', { ...base, rrn: 'x' }],
      ] as const) {
        await assert.rejects(
          w.store.saf.enqueue(bad as never),
          (e: { code?: string; field?: string }) => e.code === 'POSKEY_ERR_STORE_VALUE' && e.field === field,
        );
      }
      assert.ok(await w.store.saf.enqueue({ ...base, journalId: `${base.journalId.slice(0, -1)}Z` }));
      assert.equal(
        await w.store.saf.enqueue({ ...base, journalId: `${base.journalId.slice(0, -1)}Z` }),
        undefined,
      );
    });
  });

  describe(`restart and crash recovery on ${dialect}`, { timeout: 240_000 }, () => {
    let w: World;
    const servers: HostServer[] = [];
    const stores: Repository[] = [];

    before(async () => {
      if (dialect === 'postgres') await assertPostgresReachable();
      w = await startWorld(await makeFixture(), { host: { saf: SAF } });
    });
    after(async () => {
      for (const s of servers) await s.close();
      await w?.close();
    });

    /** A new host process on a reopened store (same node id), recovering on listen. */
    async function restart(): Promise<{ server: HostServer; store: Repository }> {
      const store = await w.fixture.open();
      stores.push(store);
      const server = createHostServer({
        config: { ...w.config, port: 0, saf: SAF },
        hsm: w.client,
        store,
        zone: w.zone,
        link: w.link,
        logger: silent,
      });
      servers.push(server);
      await server.listen();
      return { server, store };
    }

    it('delivers a queue entry left pending at shutdown after the restart', async () => {
      const { t, raw, send } = await session(w, 'R0000001');
      const start = w.network.ledger.balanceOf(CARDS.good.pan);
      const sale = await send((s) =>
        purchaseMessage(t.tid, String(s).padStart(6, '0'), { ...CARDS.good, amount: 440 }),
      );
      raw.close();
      assert.equal(sale.msg[39], '00');
      // The host stops; a reversal queued in its last moment (as for a terminal 0400) is left pending.
      await w.server.close();
      const row = await rowOf(w.store, t.tid, sale.stan);
      assert.equal(await w.server.saf.queueReversal(row, '98'), true);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal((await w.store.saf.list({ journalId: row.id }))[0]?.state, 'pending', 'nobody sends it');
      assert.equal(w.network.ledger.balanceOf(CARDS.good.pan), start - 440);
      const { server, store } = await restart();
      await safDone(store, row.id);
      assert.equal(w.network.ledger.balanceOf(CARDS.good.pan), start);
      assert.equal((await store.journal.getById(row.id))?.status, 'reversed');
      await server.close();
    });

    it('reverses an in-doubt row left by a crash once, however often the host starts', async () => {
      const { server } = await restart();
      const raw = await RawTerminal.connect(server.port!);
      const t = await w.register('R0000002');
      const { keys } = await rawSignIn(raw, t, '000001');
      const start = w.network.ledger.balanceOf(CARDS.good.pan);
      const sent = purchaseMessage(t.tid, '000002', { ...CARDS.good, amount: 610 });
      const reply = await raw.exchange(packMaced(sent, keys));
      raw.close();
      assert.equal(reply.msg[39], '00');
      await server.close();
      // The crash: the network approved it, the outcome never reached the journal.
      const row = await rowOf(w.store, t.tid, 2);
      await w.fixture.exec(
        `UPDATE journal SET status = 'received', response_code = NULL, auth_code = NULL, network_outcome = NULL WHERE id = '${row.id}'`,
      );
      // And a request row whose request never reached the network at all.
      const ghostId = await w.store.journal.append({
        tid: t.tid,
        mid: MID,
        batch: 1,
        stan: 3,
        mti: '0200',
        txnType: 'purchase',
        processingCode: '000000',
        amount: 99,
        currency: '156',
        pan: CARDS.good.pan,
        rrn: '699999999999',
      });
      assert.equal(w.network.ledger.balanceOf(CARDS.good.pan), start - 610);
      const first = await restart();
      const [entry] = await first.store.saf.list({ journalId: row.id });
      assert.equal(entry?.message['39'], '96', 'reason: host failure');
      await safDone(first.store, row.id);
      await safDone(first.store, ghostId);
      assert.equal(w.network.ledger.balanceOf(CARDS.good.pan), start);
      assert.equal((await first.store.journal.getById(row.id))?.status, 'reversed');
      assert.equal(
        (await first.store.journal.getById(ghostId))?.status,
        'reversed',
        'unknown at the network: acknowledged',
      );
      await first.server.close();
      const second = await restart();
      await second.server.saf.drained(5000);
      assert.equal((await second.store.saf.list({ journalId: row.id })).length, 1, 'queued once');
      assert.equal(w.network.ledger.balanceOf(CARDS.good.pan), start, 'reversed once');
      const reversals = w.network.ledger
        .listAuthorisations()
        .filter((a) => a.mti === '0420' && a.tid === t.tid);
      assert.equal(reversals.length, 2, 'one per in-doubt row');
    });
  });

  describe(`network down for 10 s during load on ${dialect}`, { timeout: 240_000 }, () => {
    let w: World;

    before(async () => {
      if (dialect === 'postgres') await assertPostgresReachable();
      w = await startWorld(await makeFixture(), { host: { saf: SAF } });
    });
    after(async () => {
      await w?.close();
    });

    it('every purchase is approved and in the ledger, or declined and not standing; the balance adds up', async () => {
      const ledger = w.network.ledger;
      const start = ledger.balanceOf(CARDS.good.pan);
      const terminals = await Promise.all(
        [1, 2, 3, 4].map(async (i) => {
          const t = await w.register(`L000000${i}`);
          const term = w.terminal(t, { reverseImmediately: true });
          assert.equal((await term.signIn()).approved, true);
          return { t, term };
        }),
      );
      const results: { tid: string; stan: string; rc: string; amount: number }[] = [];
      let stop = false;
      const loops = terminals.map(async ({ t, term }, i) => {
        let n = 0;
        while (!stop) {
          const amount = 100 + i * 10 + (n++ % 7);
          const r = await term.purchase(swipe(CARDS.good), amount, CARDS.good.pin);
          results.push({ tid: t.tid, stan: r.stan, rc: r.responseCode ?? 'none', amount });
          await new Promise((res) => setTimeout(res, 15));
        }
      });
      await new Promise((r) => setTimeout(r, 1500));
      await w.network.simulator.stop();
      await new Promise((r) => setTimeout(r, 10_000));
      await w.network.simulator.listen();
      await new Promise((r) => setTimeout(r, 2500));
      stop = true;
      await Promise.all(loops);
      for (const { term } of terminals) await term.close();
      await w.server.saf.drained(30_000);

      const byRrn = new Map(ledger.listAuthorisations().map((a) => [a.rrn, a]));
      let approvedNet = 0;
      const counts = { approved: 0, declined: 0 };
      for (const r of results) {
        const row = await rowOf(w.store, r.tid, Number(r.stan));
        const auth = row.rrn === null ? undefined : byRrn.get(row.rrn);
        const standing = auth !== undefined && auth.responseCode === '00' && auth.status === 'applied';
        if (r.rc === '00') {
          counts.approved++;
          assert.equal(row.status, 'approved', `${r.tid}/${r.stan} approved in the journal`);
          assert.ok(standing, `${r.tid}/${r.stan} approved and standing in the ledger`);
          approvedNet += r.amount;
        } else {
          counts.declined++;
          assert.notEqual(row.status, 'approved', `${r.tid}/${r.stan} (${r.rc}) not approved in the journal`);
          assert.equal(standing, false, `${r.tid}/${r.stan} (${r.rc}) not standing at the network`);
        }
      }
      assert.ok(counts.approved > 20, `approvals before and after the outage (${counts.approved})`);
      assert.ok(counts.declined > 0, `declines during the outage (${counts.declined})`);
      assert.equal(ledger.balanceOf(CARDS.good.pan), start - approvedNet, 'initial − approved net');
      assert.equal(await w.store.saf.pending(), 0);
    });
  });
}

safSuite('sqlite', sqliteFixture);
safSuite('postgres', postgresFixture);
