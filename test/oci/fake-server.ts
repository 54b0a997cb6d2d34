/** A scripted HTTP server on 127.0.0.1 that records every request, for registry edge cases. */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

export type FakeHandler = (
  req: RecordedRequest,
  res: ServerResponse,
) => unknown;

export interface FakeServer {
  host: string;
  port: number;
  requests: RecordedRequest[];
  /** Replaces the handler (requests keep being recorded). */
  handle(handler: FakeHandler): void;
  close(): Promise<void>;
}

/** Starts a server on a free loopback port; the handler sees the fully read request. */
export async function startFake(handler: FakeHandler = notFound): Promise<FakeServer> {
  const requests: RecordedRequest[] = [];
  let current = handler;

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      requests.push(recorded);
      Promise.resolve(current(recorded, res)).catch((err: unknown) => {
        res.writeHead(500).end(String(err));
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    port,
    requests,
    handle: (next) => {
      current = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function notFound(_req: RecordedRequest, res: ServerResponse): void {
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"errors":[{"code":"NOT_FOUND","message":"not here"}]}');
}

/** The path of a recorded URL, without its query. */
export function pathOf(req: RecordedRequest): string {
  return new URL(req.url, 'http://x').pathname;
}
