/**
 * The optional native helpers in native/build/ (scripts/build-native.js builds them
 * when a compiler and Node's headers are there). Loading one never throws: a missing,
 * foreign or incomplete file means "do without", and every caller has a fallback.
 */
import type * as net from 'node:net';
import { join } from 'node:path';

/** native/build/<file> of this checkout or image (this file is src/lib or dist/lib). */
export function nativeFile(file: string): string {
  return join(__dirname, '..', '..', 'native', 'build', file);
}

/** The addon at `path` when it exports a function under every one of `keys`, else undefined. */
export function loadAddon<T extends object>(path: string, keys: readonly (keyof T & string)[]): T | undefined {
  try {
    const mod = require(path) as Record<string, unknown>;
    return keys.every((k) => typeof mod[k] === 'function') ? mod as T : undefined;
  } catch {
    return undefined;
  }
}

/** A socket's file descriptor, which libuv keeps on its handle once it has one (Unix); undefined before. */
export function socketFd(socket: net.Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}
