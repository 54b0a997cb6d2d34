/**
 * A safety net for the security tests: every TCP connection this process opens goes through
 * `net.Socket.prototype.connect`, which the guard wraps so that a connection to anything but
 * 127.0.0.1 (another address, a host name, a Unix socket) is never made. Such an attempt is
 * recorded and the socket fails as if the connection had been refused.
 *
 * The tests assert that the code under test refuses hostile hosts on its own, before any
 * connection; the guard only makes sure that a regression shows up as a recorded attempt and a
 * failed test, never as traffic to a metadata service or another machine.
 */
import { Socket } from 'node:net';

/** One connection the guard refused to make. */
export interface BlockedConnection {
  host: string;
  port: string;
}

export interface NetworkGuard {
  /** Connections refused since the guard was installed (or last cleared). */
  readonly blocked: BlockedConnection[];
  /** Puts `Socket.prototype.connect` back. */
  uninstall(): void;
}

const ALLOWED_HOST = '127.0.0.1';

type Connect = (this: Socket, ...args: unknown[]) => Socket;

/** Wraps `Socket.prototype.connect`; call `uninstall()` in `afterAll`. */
export function installNetworkGuard(): NetworkGuard {
  const original = Socket.prototype.connect as unknown as Connect;
  const blocked: BlockedConnection[] = [];

  const guarded: Connect = function (this: Socket, ...args: unknown[]): Socket {
    const target = targetOf(args);
    if (target.host === ALLOWED_HOST) return original.apply(this, args);

    blocked.push(target);
    const refused = new Error(`network guard: no connection to ${target.host}:${target.port}`);
    process.nextTick(() => this.destroy(Object.assign(refused, { code: 'ECONNREFUSED' })));
    return this;
  };
  Socket.prototype.connect = guarded as unknown as typeof Socket.prototype.connect;

  return {
    blocked,
    uninstall() {
      Socket.prototype.connect = original as unknown as typeof Socket.prototype.connect;
    },
  };
}

/**
 * Where a `connect` call aims. Node passes `(options, cb)`, `(port, host, cb)`, `(path, cb)`,
 * or, from `net.connect`, one already normalised `[options, cb]` array.
 */
function targetOf(args: unknown[]): BlockedConnection {
  const first = Array.isArray(args[0]) ? (args[0] as unknown[])[0] : args[0];

  if (typeof first === 'object' && first !== null) {
    const options = first as { host?: unknown; port?: unknown; path?: unknown };
    if (typeof options.path === 'string') return { host: `unix:${options.path}`, port: '' };
    return { host: String(options.host ?? 'localhost'), port: String(options.port ?? '') };
  }
  if (typeof first === 'string' && !/^[0-9]+$/.test(first)) {
    return { host: `unix:${first}`, port: '' };
  }
  const host = typeof args[1] === 'string' ? args[1] : 'localhost';
  return { host, port: String(first) };
}
