/**
 * The host's links to the card network: one NetworkLink per configured endpoint
 * (`network.endpoints`, or `network.host`/`port`), each kept open, reconnecting with back-off and
 * echo-tested when idle (0800 70 = 301 every `network.echoInterval` without an answer on it; a
 * failed echo drops the connection, which marks the link down and reconnects it).
 *
 * Requests go round-robin to the links that are up; when one dies the others carry everything, and
 * it rejoins once reconnected. With no link up, a request waits on the first link (up to its
 * deadline) like a request on a single link does. A request already sent on a link that dies is
 * in doubt (POSKEY_ERR_NETWORK_LOST): it is not resent elsewhere, since the network may have
 * processed it.
 */
import type { Logger } from 'pino';
import type { HostConfig } from './config.js';
import { hostError } from './errors.js';
import {
  type LinkState,
  type LinkStats,
  NetworkLink,
  type NetworkReply,
  type NetworkTransport,
} from './network-link.js';
import { managementRequest } from './network-management.js';

const MAX_STAN = 999_999;

export class NetworkLinkPool implements NetworkTransport {
  readonly links: readonly NetworkLink[];
  #next = 0;
  #stan = Math.floor(Math.random() * MAX_STAN);
  readonly #echoes: LinkEcho[] = [];

  constructor(
    links: readonly NetworkLink[],
    echo?: { intervalMs: number; acquirerId: string; log?: Logger },
  ) {
    if (links.length === 0)
      throw hostError('POSKEY_ERR_HOST_CONFIG', 'at least one link', 'network.endpoints');
    this.links = links;
    if (echo !== undefined && echo.intervalMs > 0) {
      for (const link of links) this.#echoes.push(new LinkEcho(link, echo));
    }
  }

  get state(): LinkState {
    const states = this.links.map((l) => l.state);
    for (const s of ['up', 'connecting', 'down'] as const) if (states.includes(s)) return s;
    return 'closed';
  }

  start(): void {
    for (const l of this.links) l.start();
    for (const e of this.#echoes) e.start();
  }

  /** Resolves once any link is up, or rejects after `ms`. */
  async waitUntilUp(ms: number): Promise<void> {
    await Promise.any(this.links.map((l) => l.waitUntilUp(ms))).catch((e: AggregateError) => {
      throw e.errors[0];
    });
  }

  nextStan(): string {
    this.#stan = this.#stan >= MAX_STAN ? 1 : this.#stan + 1;
    return String(this.#stan).padStart(6, '0');
  }

  request(stan: string, body: Buffer): Promise<NetworkReply> {
    return this.#pick().request(stan, body);
  }

  #pick(): NetworkLink {
    const n = this.links.length;
    for (let i = 0; i < n; i++) {
      const link = this.links[(this.#next + i) % n]!;
      if (link.state === 'up') {
        this.#next = (this.#next + i + 1) % n;
        return link;
      }
    }
    return this.links[0]!;
  }

  /** The links' counters added up (state: the pool's). */
  stats(): LinkStats {
    const total: LinkStats = {
      state: this.state,
      pending: 0,
      sent: 0,
      answered: 0,
      timeouts: 0,
      lost: 0,
      notSent: 0,
      late: 0,
      connects: 0,
    };
    for (const l of this.links) {
      const s = l.stats();
      for (const k of Object.keys(total) as (keyof LinkStats)[]) {
        if (k !== 'state') total[k] += s[k];
      }
    }
    return total;
  }

  /** Per link: endpoint, state, counters and echo results. */
  describe(): { endpoint: string; stats: LinkStats; echoes: EchoStats | undefined }[] {
    return this.links.map((l, i) => ({
      endpoint: l.endpoint,
      stats: l.stats(),
      echoes: this.#echoes[i]?.stats(),
    }));
  }

  async close(): Promise<void> {
    for (const e of this.#echoes) e.stop();
    await Promise.all(this.links.map((l) => l.close()));
  }
}

export interface EchoStats {
  sent: number;
  failed: number;
}

/** Echo tests one link when nothing was answered on it for an interval. */
class LinkEcho {
  readonly #link: NetworkLink;
  readonly #o: { intervalMs: number; acquirerId: string; log?: Logger };
  #timer: NodeJS.Timeout | undefined;
  #lastAnswered = -1;
  #busy = false;
  readonly #stats: EchoStats = { sent: 0, failed: 0 };

  constructor(link: NetworkLink, o: { intervalMs: number; acquirerId: string; log?: Logger }) {
    this.#link = link;
    this.#o = o;
  }

  start(): void {
    this.#timer = setInterval(() => void this.#tick(), this.#o.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  stats(): EchoStats {
    return { ...this.#stats };
  }

  async #tick(): Promise<void> {
    const s = this.#link.stats();
    const answered = s.answered + s.late;
    const idle = answered === this.#lastAnswered;
    this.#lastAnswered = answered;
    if (!idle || this.#busy || s.state !== 'up') return;
    this.#busy = true;
    const stan = this.#link.nextStan();
    try {
      this.#stats.sent++;
      const body = await managementRequest({
        code: '301',
        stan,
        acquirerId: this.#o.acquirerId,
        now: Date.now(),
      });
      await this.#link.request(stan, body);
    } catch (e) {
      this.#stats.failed++;
      const code = (e as { code?: string }).code;
      this.#o.log?.warn({ endpoint: this.#link.endpoint, code }, 'echo test failed');
      if (code === 'POSKEY_ERR_NETWORK_TIMEOUT' || code === 'POSKEY_ERR_NETWORK_LOST')
        this.#link.drop('echo failed');
    } finally {
      this.#busy = false;
    }
  }
}

/** The configured links (not started), echo-tested as configured. */
export function createNetworkLinks(
  config: HostConfig,
  log: Logger,
  onUnsolicited?: (r: NetworkReply) => void,
): NetworkLinkPool {
  const n = config.network;
  const endpoints = n.endpoints ?? [{ host: n.host, port: n.port }];
  const links = endpoints.map(
    (e) =>
      new NetworkLink({
        host: e.host,
        port: e.port,
        timeoutMs: n.timeout,
        connectTimeoutMs: n.connectTimeout,
        reconnectMinMs: n.reconnectMin,
        reconnectMaxMs: n.reconnectMax,
        maxInFlight: n.maxInFlight,
        log,
        ...(onUnsolicited ? { onUnsolicited } : {}),
      }),
  );
  return new NetworkLinkPool(links, { intervalMs: n.echoInterval, acquirerId: config.acquirerId, log });
}
