/**
 * Plaintext on the wire: tcpdump on the lab bridge, counting connection attempts (SYN)
 * whose destination is an enrolled pod on an app port. Mesh traffic between nodes
 * crosses the bridge only as HBONE (to a node's 15008), so any such SYN is a flow that
 * skipped the ztunnels.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export class PlaintextWatch {
  /** "src > dst" of every plaintext SYN seen. */
  readonly seen: string[] = [];
  private readonly child: ChildProcess;
  private readonly ready: Promise<void>;

  constructor(podIps: string[], ports: number[], bridge = 'weft-br0') {
    const hosts = podIps.map((ip) => `dst host ${ip}`).join(' or ');
    const portExpr = ports.map((p) => `dst port ${p}`).join(' or ');
    const filter = `tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn and (${hosts}) and (${portExpr})`;
    this.child = spawn('tcpdump', ['-i', bridge, '-nn', '-l', '-q', filter], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.child.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        const m = /IP6? (\S+) > (\S+?):/.exec(l);
        if (m) this.seen.push(`${m[1]} > ${m[2]}`);
      }
    });
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('tcpdump did not start within 5 s')), 5000);
      this.child.stderr!.on('data', (b: Buffer) => { if (b.toString().includes('listening on')) { clearTimeout(timer); resolve(); } });
      this.child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`tcpdump exited (${code})`)); });
    });
  }

  started(): Promise<void> {
    return this.ready;
  }

  /** Stops tcpdump after letting it flush what it buffered. */
  async stop(): Promise<string[]> {
    await new Promise((r) => setTimeout(r, 500));
    if (this.child.exitCode === null) {
      this.child.kill('SIGINT');
      await new Promise((r) => this.child.once('exit', r));
    }
    return this.seen;
  }
}
