/**
 * `poskey host serve` as a real child process (node + tsx, from source), for tests that must kill
 * it for real: SIGKILL gives the host no chance to flush, close or answer anything, exactly like a
 * power cut of the host machine (the kernel still closes its sockets, as a dead machine's peers
 * notice by RST or timeout).
 *
 * The host is started on a fixed terminal port, so terminals reconnect to the same address after a
 * restart (a load balancer's virtual address, in a real deployment). Its stderr is kept (bounded)
 * for failure messages.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const STDERR_KEEP = 20_000;

/** What `poskey host serve --json` prints once listening. */
export interface HostReady {
  host: string;
  port: number;
  network: string;
  database: string;
  journal: string;
}

export interface HostProcessOptions {
  /** Arguments after `poskey host serve`. */
  args: readonly string[];
  env?: Record<string, string>;
  /** How long a start may take before it counts as failed (tsx compiles on a loaded machine). */
  readyTimeoutMs?: number;
}

/** A free loopback port: bound once by the OS, released for the host to take. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** One host process; `start()` again after it ended runs a new one with the same arguments. */
export class HostProcess {
  readonly #options: HostProcessOptions;
  #child: ChildProcess | undefined;
  #exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  #stderr = '';
  /** Processes started so far. */
  starts = 0;

  constructor(options: HostProcessOptions) {
    this.#options = options;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** The last part of the host's stderr (all its runs), for failure messages. */
  get stderr(): string {
    return this.#stderr;
  }

  /**
   * Spawns the host (with `env` over the options' environment) and resolves once it printed its
   * ready line.
   * @throws Error with the host's stderr when it exits first or is not ready in time
   */
  async start(env: Record<string, string> = {}): Promise<HostReady> {
    if (this.#child !== undefined) throw new Error('the host process is already running');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'host', 'serve', '--json', ...this.#options.args],
      { cwd: ROOT, env: { ...process.env, ...this.#options.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.starts++;
    this.#child = child;
    this.#exit = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        if (this.#child === child) this.#child = undefined;
        resolve({ code, signal });
      }),
    );
    child.stderr!.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString()).slice(-STDERR_KEEP);
    });
    let stdout = '';
    const ready = new Promise<HostReady>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        const nl = stdout.indexOf('\n');
        if (nl >= 0) {
          try {
            resolve(JSON.parse(stdout.slice(0, nl)) as HostReady);
          } catch (e) {
            reject(new Error(`host printed ${stdout.slice(0, nl)}: ${(e as Error).message}`));
          }
        }
      });
    });
    const ms = this.#options.readyTimeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    const failed = Promise.race([
      this.#exit.then(({ code, signal }) => {
        throw new Error(`host exited (${signal ?? code}) before it was ready:\n${this.#stderr}`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`host not ready in ${ms} ms:\n${this.#stderr}`)), ms);
      }),
    ]);
    try {
      return await Promise.race([ready, failed]);
    } catch (e) {
      await this.kill();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL: no drain, no flush. Resolves once the process is gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    child.kill('SIGKILL');
    await this.#exit;
  }

  /**
   * SIGTERM: the host drains and exits. Resolves with its exit code; SIGKILLs it after `ms`.
   */
  async stop(ms = 30_000): Promise<number | null> {
    const child = this.#child;
    if (child === undefined) return null;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    try {
      const { code, signal } = await this.#exit!;
      return signal === null ? code : -1;
    } finally {
      clearTimeout(timer);
    }
  }
}
