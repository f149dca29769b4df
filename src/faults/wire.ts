/**
 * What crosses the wire, from the outside: tcpdump (one wrapper for the fault suite and
 * the e2e tests), and PlaintextWatch on the lab bridge, counting connection attempts
 * (SYN) whose destination is an enrolled pod on an app port. Mesh traffic between nodes
 * crosses the bridge only as HBONE (to a node's 15008), so any such SYN is a flow that
 * skipped the ztunnels.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export interface TcpdumpOptions {
  /** Network namespace of `iface`; undefined: the root namespace. */
  netns?: string;
  /** Write the raw packets to this pcap file instead of printing a line per packet. */
  writeTo?: string;
}

/** How long tcpdump gets to open its interface. */
const START_TIMEOUT_MS = 5000;

/** tcpdump on `iface` for packets matching `filter`: a line per packet in `lines`, or a pcap file. */
export class Tcpdump {
  readonly lines: string[] = [];
  private readonly child: ChildProcess;
  private readonly closed: Promise<void>;
  private readonly ready: Promise<void>;

  constructor(iface: string, filter: string, opts: TcpdumpOptions = {}) {
    // --immediate-mode: packets are handed over as they come, not when a ring block fills
    // or times out (a SIGINT would drop a pending block and hide packets).
    const out = opts.writeTo ? ['-U', '-s', '0', '-w', opts.writeTo] : ['-nn', '-l'];
    const argv = ['tcpdump', '--immediate-mode', '-i', iface, ...out, filter];
    this.child = opts.netns ? spawn('ip', ['netns', 'exec', opts.netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.child.stdout!.on('data', (c: Buffer) => {
      const parts = (buf + c.toString()).split('\n');
      buf = parts.pop() ?? '';
      this.lines.push(...parts.filter(Boolean));
    });
    // 'close', not 'exit': only then has everything tcpdump printed been read.
    this.closed = new Promise((resolve) => this.child.once('close', () => resolve()));
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`tcpdump on ${iface} did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      this.child.stderr!.on('data', (b: Buffer) => { if (b.toString().includes('listening on')) { clearTimeout(timer); resolve(); } });
      this.child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`tcpdump on ${iface} exited (${code}) before listening`)); });
      this.child.once('error', (err) => { clearTimeout(timer); reject(err); });
    });
    this.ready.catch(() => { /* seen by whoever awaits started() */ });
  }

  /** Resolves once tcpdump listens (packets before that are not seen). */
  started(): Promise<void> {
    return this.ready;
  }

  /** Stops tcpdump (SIGINT: it flushes what it holds) and returns its lines. */
  async stop(): Promise<string[]> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGINT');
    await this.closed;
    return this.lines;
  }
}

export class PlaintextWatch {
  private readonly dump: Tcpdump;

  constructor(podIps: string[], ports: number[], bridge = 'weft-br0') {
    const hosts = podIps.map((ip) => `dst host ${ip}`).join(' or ');
    const portExpr = ports.map((p) => `dst port ${p}`).join(' or ');
    this.dump = new Tcpdump(bridge, `tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn and (${hosts}) and (${portExpr})`);
  }

  started(): Promise<void> {
    return this.dump.started();
  }

  /** "src > dst" of every plaintext SYN seen, once packets still in flight had time to arrive. */
  async stop(): Promise<string[]> {
    await sleep(500);
    const seen: string[] = [];
    for (const l of await this.dump.stop()) {
      const m = /IP6? (\S+) > (\S+?):/.exec(l);
      if (m) seen.push(`${m[1]} > ${m[2]}`);
    }
    return seen;
  }
}
