/**
 * A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol on
 * `--remote-debugging-pipe` (fd 3: commands in, fd 4: answers and events out, each
 * message a JSON object ending in NUL): no WebSocket, no playwright or puppeteer. Enough
 * to open a page, wait until an expression on it holds, read values and take a
 * screenshot. Each launch gets a fresh profile in a tmp dir, removed on close, and only
 * the PID this helper started is ever killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

export const CHROMIUM = '/usr/bin/chromium';

/** Why a browser test cannot run here, or false. */
export function chromiumSkipReason(): string | false {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (apt-get install chromium)`;
  return false;
}

interface Pending {
  resolve(v: Record<string, unknown>): void;
  reject(err: Error): void;
  method: string;
}

export interface ChromiumOptions {
  width?: number;
  height?: number;
}

export class Chromium {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private buffer = '';
  private sessionId = '';
  private stderrTail = '';
  private exited = false;

  private constructor(private readonly child: ChildProcess, private readonly profileDir: string) {
    const out = child.stdio[4] as Readable;
    out.setEncoding('utf8');
    out.on('data', (chunk: string) => this.receive(chunk));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => { this.stderrTail = (this.stderrTail + chunk).slice(-4000); });
    child.once('exit', () => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error(`chromium exited during ${p.method}; its stderr ends:\n${this.stderrTail}`));
      this.pending.clear();
    });
  }

  /** Starts Chromium with a fresh profile and attaches to its first tab. */
  static async launch(opts: ChromiumOptions = {}): Promise<Chromium> {
    const profileDir = mkdtempSync(join(tmpdir(), 'weft-chromium-'));
    const args = [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage', '--hide-scrollbars', '--mute-audio',
      `--user-data-dir=${profileDir}`, `--window-size=${opts.width ?? 1280},${opts.height ?? 900}`,
      '--remote-debugging-pipe', 'about:blank',
    ];
    const child = spawn(CHROMIUM, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    const c = new Chromium(child, profileDir);
    try {
      const { targetInfos } = await c.send('Target.getTargets') as { targetInfos: Array<{ targetId: string; type: string }> };
      const page = targetInfos.find((ti) => ti.type === 'page');
      if (!page) throw new Error('chromium opened no tab');
      const { sessionId } = await c.send('Target.attachToTarget', { targetId: page.targetId, flatten: true }) as { sessionId: string };
      c.sessionId = sessionId;
      await c.send('Page.enable');
      await c.send('Runtime.enable');
      await c.send('Emulation.setDeviceMetricsOverride', { width: opts.width ?? 1280, height: opts.height ?? 900, deviceScaleFactor: 1, mobile: false });
      return c;
    } catch (err) {
      await c.close();
      throw err;
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    let nul: number;
    while ((nul = this.buffer.indexOf('\0')) !== -1) {
      const text = this.buffer.slice(0, nul);
      this.buffer = this.buffer.slice(nul + 1);
      const msg = JSON.parse(text) as { id?: number; result?: Record<string, unknown>; error?: { message: string } };
      if (msg.id === undefined) continue; // an event; this helper polls instead
      const p = this.pending.get(msg.id);
      if (!p) continue;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p.resolve(msg.result ?? {});
    }
  }

  /** One DevTools command; page-level ones go to the attached tab. */
  send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error(`chromium has exited; its stderr ends:\n${this.stderrTail}`));
    const id = this.nextId++;
    const browserLevel = method.startsWith('Target.') || method.startsWith('Browser.');
    const msg = { id, method, params, ...(browserLevel || !this.sessionId ? {} : { sessionId: this.sessionId }) };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      (this.child.stdio[3] as Writable).write(JSON.stringify(msg) + '\0');
    });
  }

  async navigate(url: string): Promise<void> {
    const r = await this.send('Page.navigate', { url }) as { errorText?: string };
    if (r.errorText) throw new Error(`chromium could not open ${url}: ${r.errorText}`);
  }

  /** The value of a JavaScript expression on the page (awaited if a promise; JSON values only). */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }) as {
      result: { value?: T }; exceptionDetails?: { text: string; exception?: { description?: string } };
    };
    if (r.exceptionDetails) throw new Error(`page threw: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  /**
   * Polls `expression` until it is truthy and returns that value; fails after
   * `timeoutMs` saying what was awaited and, from `probe`, what the page showed then.
   */
  async waitFor<T>(expression: string, what: string, opts: { timeoutMs?: number; probe?: string } = {}): Promise<T> {
    const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
    for (;;) {
      const v = await this.evaluate<T>(expression).catch(() => undefined);
      if (v) return v;
      if (Date.now() > deadline) {
        const seen = await this.evaluate<unknown>(opts.probe ?? 'document.body ? document.body.innerText.slice(0, 2000) : ""').catch((e: Error) => e.message);
        throw new Error(`the page did not show ${what} within ${opts.timeoutMs ?? 15_000} ms; it showed:\n${JSON.stringify(seen)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A PNG of the viewport, written to `path`. */
  async screenshot(path: string): Promise<number> {
    const { data } = await this.send('Page.captureScreenshot', { format: 'png' }) as { data: string };
    const png = Buffer.from(data, 'base64');
    writeFileSync(path, png);
    return png.length;
  }

  /** Closes the browser (by protocol, then by its PID if it lingers) and removes its profile. */
  async close(): Promise<void> {
    if (!this.exited) {
      const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.send('Browser.close').catch(() => { /* it may exit before answering */ });
      const timer = setTimeout(() => { if (!this.exited) this.child.kill('SIGKILL'); }, 5000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(this.profileDir, { recursive: true, force: true });
  }
}
