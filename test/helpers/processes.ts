import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { Env } from './env';
import { within } from './wait';

const MAIN = join(__dirname, '..', '..', 'dist', 'main.js');

/** A node started as an operator starts it: `node dist/main.js` with only the given environment. */
export class NodeProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => (this.stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  static start(env: Env): NodeProcess {
    const child = spawn(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH, LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new NodeProcess(child);
  }

  /** Resolves with the node's URL once it logs that it listens. */
  async listening(timeoutMs = 15_000): Promise<string> {
    return within(
      new Promise<string>((resolve, reject) => {
        const check = () => {
          const m = /listening on (http:\/\/[^\s"]+)/.exec(this.stdout);
          if (m) resolve(m[1].replace('0.0.0.0', '127.0.0.1'));
        };
        this.child.stdout?.on('data', check);
        check();
        void this.exited.then((code) => reject(new Error(`node exited with ${code} before listening: ${this.stderr}`)));
      }),
      'the node to listen',
      timeoutMs,
    );
  }

  /** Waits for the exit; fails naming the process if it takes longer than `timeoutMs`. */
  async exitCode(timeoutMs = 15_000): Promise<number | null> {
    return within(this.exited, 'the node process to exit', timeoutMs);
  }

  /** SIGTERM, then the exit code and whether it came within the contract's 10 s. */
  async terminate(): Promise<{ code: number | null; within10s: boolean }> {
    const t0 = Date.now();
    this.signal('SIGTERM');
    const code = await this.exitCode(20_000);
    return { code, within10s: Date.now() - t0 < 10_000 };
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** Cleanup: SIGKILL if still running. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** What a node's readiness says: 'ok', or its status and reasons (or why it did not answer). */
export async function readiness(url: string): Promise<string> {
  try {
    const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2000) });
    return res.status === 200 ? 'ok' : `${res.status} ${await res.text()}`;
  } catch (err) {
    return String(err);
  }
}
