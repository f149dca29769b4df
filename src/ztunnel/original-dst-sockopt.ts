import type * as net from 'node:net';
import { WeftError } from '../lib/errors';
import { loadAddon, nativeFile, socketFd } from '../lib/native';
import type { OriginalDstSource } from './contracts';
import type { OriginalDst } from '../hbone/contracts';
import { OriginalDstResolver } from './original-dst';

type NativeOriginalDst = (fd: number) => OriginalDst;

/**
 * The compiled getsockopt(SO_ORIGINAL_DST) (native/original_dst.c), if this machine
 * built it. Loaded once; undefined means "read conntrack instead".
 */
export function loadNativeOriginalDst(path = nativeFile('weft_native.node')): NativeOriginalDst | undefined {
  return loadAddon<{ originalDst: NativeOriginalDst }>(path, ['originalDst'])?.originalDst;
}

/**
 * Original destinations in O(1) from the kernel when the native helper is there, the
 * conntrack table otherwise (and for the odd socket the kernel cannot answer for).
 */
export class OriginalDstLookup implements OriginalDstSource {
  readonly method: 'sockopt' | 'conntrack';
  private readonly native: NativeOriginalDst | undefined;
  private readonly fallback = new OriginalDstResolver();
  /** Lookups answered by each method, for /config_dump. */
  readonly counts = { sockopt: 0, conntrack: 0 };

  constructor(opts: { native?: NativeOriginalDst | null } = {}) {
    this.native = opts.native === null ? undefined : (opts.native ?? loadNativeOriginalDst());
    this.method = this.native ? 'sockopt' : 'conntrack';
  }

  lookup(socket: net.Socket): Promise<OriginalDst> {
    const fd = this.native ? socketFd(socket) : undefined;
    if (this.native && fd !== undefined) {
      try {
        const dst = this.native(fd);
        this.counts.sockopt++;
        return Promise.resolve(dst);
      } catch (err) {
        // ENOENT: the kernel has no NAT entry for it, so conntrack will not either.
        if ((err as { code?: string }).code === 'ENOENT') {
          return Promise.reject(new WeftError('WEFT_ORIGINAL_DST_UNKNOWN',
            `no NAT record for ${socket.remoteAddress}:${socket.remotePort} -> ${socket.localAddress}:${socket.localPort}: `
            + 'the connection did not come through the capture rules (check iptables-save -t nat shows the WEFT chains)', { cause: err }));
        }
      }
    }
    this.counts.conntrack++;
    return this.fallback.resolve(socket);
  }

  close(): void {
    this.fallback.close();
  }
}
