/**
 * The step runner and the router, with steps made up for the test: prepare order, abort
 * short-circuit to the onAbort steps, commit/abort only for joined steps and in order, a throwing
 * step becoming 96, and the route table's declared data flow.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { parseHostConfig } from '../../src/host/config.js';
import {
  ABORTED,
  type HostRuntime,
  type Outcome,
  PREPARED,
  type ReplySink,
  type Step,
  TxnContext,
} from '../../src/host/context.js';
import { HostMetrics } from '../../src/host/metrics.js';
import { runPipeline } from '../../src/host/pipeline.js';
import { checkSteps, DEFAULT_ROUTES, Router } from '../../src/host/router.js';
import { DuplicateGuard } from '../../src/host/steps/duplicate.js';
import { type IsoMessage, pack } from '../../src/iso8583/index.js';
import { POS_DIALECT } from '../../src/protocol/unionpay-pos.js';

function runtime(): HostRuntime {
  return {
    config: parseHostConfig({}),
    metrics: new HostMetrics(),
    log: pino({ level: 'silent' }),
    clock: Date.now,
    guard: new DuplicateGuard(),
  } as unknown as HostRuntime;
}

const sink: ReplySink = { send: () => undefined };

function context(req: IsoMessage = { 0: '0200', 11: '000001', 41: 'TERM0001' }): TxnContext {
  const payload = Buffer.concat([Buffer.from('600003000060310000000000', 'hex'), pack(POS_DIALECT, req)]);
  const ctx = new TxnContext(runtime(), sink, payload, 5, performance.now());
  ctx.req = req;
  return ctx;
}

/** A step that records what happens to it. */
function step(
  name: string,
  log: string[],
  decide: (ctx: TxnContext) => Outcome | Promise<Outcome> = () => PREPARED,
  extra: Partial<Step> = {},
): Step {
  return {
    name,
    requires: [],
    provides: [],
    prepare: (ctx) => {
      log.push(`prepare ${name}${ctx.aborted ? ' (after abort)' : ''}`);
      return decide(ctx);
    },
    commit: () => {
      log.push(`commit ${name}`);
    },
    abort: () => {
      log.push(`abort ${name}`);
    },
    ...extra,
  };
}

describe('runPipeline', () => {
  it('prepares every step in order, then commits each, in order', async () => {
    const log: string[] = [];
    const ctx = context();
    await runPipeline(
      [step('a', log), step('b', log, async (): Promise<Outcome> => PREPARED), step('c', log)],
      ctx,
    );
    assert.deepEqual(log, ['prepare a', 'prepare b', 'prepare c', 'commit a', 'commit b', 'commit c']);
    assert.equal(ctx.aborted, false);
    assert.equal(ctx.host.metrics.snapshot().steps.b?.count, 1, 'each prepare is timed');
  });

  it('after an abort prepares only onAbort steps and aborts the joined ones; the code is kept', async () => {
    const log: string[] = [];
    const ctx = context();
    await runPipeline(
      [
        step('a', log),
        step('mac', log, (c) => c.fail('A0')),
        step('skipped', log),
        step('journal', log, () => PREPARED, { onAbort: true }),
        step('respond', log, () => PREPARED, { onAbort: true }),
      ],
      ctx,
    );
    assert.deepEqual(log, [
      'prepare a',
      'prepare mac',
      'prepare journal (after abort)',
      'prepare respond (after abort)',
      'abort a',
      'abort mac',
      'abort journal',
      'abort respond',
    ]);
    assert.equal(ctx.rc, 'A0');
    assert.equal(ctx.abortedBy, 'mac');
  });

  it('turns a throwing prepare into an abort with 96, and an abort without a code into 96', async () => {
    const log: string[] = [];
    const ctx = context();
    await runPipeline(
      [
        step('boom', log, () => {
          throw new Error('bug');
        }),
        step('respond', log, () => PREPARED, { onAbort: true }),
      ],
      ctx,
    );
    assert.equal(ctx.rc, '96');
    assert.ok(ctx.error instanceof Error);
    const ctx2 = context();
    await runPipeline([step('silent', [], () => ABORTED)], ctx2);
    assert.equal(ctx2.rc, '96');
  });

  it('keeps running commits after one throws (the reply must still go out)', async () => {
    const log: string[] = [];
    const ctx = context();
    await runPipeline(
      [
        step('journal', log, () => PREPARED, {
          commit: () => {
            throw new Error('disk');
          },
        }),
        step('respond', log),
      ],
      ctx,
    );
    assert.deepEqual(log, ['prepare journal', 'prepare respond', 'commit respond']);
    assert.ok(ctx.error instanceof Error);
  });

  it('a rejected async prepare aborts like a throw', async () => {
    const ctx = context();
    await runPipeline([step('net', [], async () => Promise.reject(new Error('x')))], ctx);
    assert.equal(ctx.rc, '96');
    assert.equal(ctx.abortedBy, 'net');
  });
});

describe('Router', () => {
  it('checks every default route and the fallback when built', () => {
    assert.doesNotThrow(() => new Router());
    for (const [name, steps] of Object.entries(DEFAULT_ROUTES))
      assert.doesNotThrow(() => checkSteps(name, steps!));
  });

  it('refuses a step whose input no earlier step provides (POSKEY_ERR_HOST_ROUTE)', () => {
    const respond: Step = {
      name: 'respond',
      requires: [],
      provides: [],
      onAbort: true,
      prepare: () => PREPARED,
    };
    const needsPan: Step = { name: 'needs-pan', requires: ['pan'], provides: [], prepare: () => PREPARED };
    assert.throws(
      () => checkSteps('broken', [needsPan, respond]),
      (e: Error & { code?: string; field?: string }) =>
        e.code === 'POSKEY_ERR_HOST_ROUTE' &&
        e.field === 'broken' &&
        /needs-pan requires pan/.test(e.message),
    );
    assert.throws(() => new Router({ purchase: [needsPan, respond] }), { code: 'POSKEY_ERR_HOST_ROUTE' });
  });

  it('refuses a route without a respond step (POSKEY_ERR_HOST_ROUTE)', () => {
    assert.throws(
      () => checkSteps('mute', [{ name: 'x', requires: [], provides: [], prepare: () => PREPARED }]),
      {
        code: 'POSKEY_ERR_HOST_ROUTE',
      },
    );
  });

  it('routes by catalogue name, falls back for the rest, ignores responses and releases the duplicate key', async () => {
    const seen: string[] = [];
    const respond = (tag: string): Step => ({
      name: 'respond',
      requires: [],
      provides: [],
      onAbort: true,
      prepare: (ctx) => {
        seen.push(`${tag}:${ctx.name}`);
        ctx.dupKey = 'K';
        ctx.host.guard.claim('K');
        return PREPARED;
      },
    });
    const router = new Router({ purchase: [respond('purchase')] }, [respond('fallback')]);
    const purchase = context({
      0: '0200',
      3: '000000',
      25: '00',
      60: { 1: '22', 2: '000001', 3: '000' },
    } as IsoMessage);
    assert.equal(await router.dispatch(purchase), true);
    assert.equal(purchase.host.guard.claim('K'), false, 'released into the recent set');
    const refund = context({
      0: '0220',
      3: '200000',
      25: '00',
      60: { 1: '25', 2: '000001', 3: '000' },
    } as IsoMessage);
    assert.equal(await router.dispatch(refund), true);
    assert.equal(await router.dispatch(context({ 0: '0210' })), false);
    assert.deepEqual(seen, ['purchase:purchase', 'fallback:refund']);
  });
});
