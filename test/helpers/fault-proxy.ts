/**
 * A fault-injecting HTTP proxy on 127.0.0.1 in front of a real registry. Requests pass through
 * unchanged (the Host header too, so the registry's Location headers point back at the proxy)
 * unless a rule matches; each rule fires `times` times after letting `skip` matches pass:
 *
 * - `status`: answer with a status (429 with Retry-After, 503, …) without forwarding;
 * - `truncate`: forward, then drop the connection after `afterBytes` of the response body;
 * - `corrupt`: forward, flipping the response body's byte `atByte`;
 * - `cut-request`: read `afterBytes` of the request body, then drop the connection; the
 *   registry sees nothing of the request;
 * - `cut-forwarded`: forward the first `afterBytes` of the request body, then drop both
 *   connections; the registry sees a client that went away mid-body;
 * - `stall`: read the request, answer nothing for `ms`, then drop the connection (a registry
 *   that hangs: the client's own timeout should fire first).
 */
import {
  Agent,
  createServer,
  request,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault =
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  | { kind: 'truncate'; afterBytes: number }
  | { kind: 'corrupt'; atByte: number }
  | { kind: 'cut-request'; afterBytes: number }
  | { kind: 'cut-forwarded'; afterBytes: number }
  | { kind: 'stall'; ms: number };

export interface FaultRule {
  method?: string;
  /** Matched against the path (without query). */
  path?: RegExp;
  /** Matches to let through before firing (default 0). */
  skip?: number;
  /** Times to fire (default 1). */
  times?: number;
  fault: Fault;
}

/** One request the proxy saw. */
export interface ProxyRecord {
  method: string;
  path: string;
  range?: string;
  contentRange?: string;
  /** The fault applied, if any. */
  fault?: Fault['kind'];
}

export interface FaultProxy {
  host: string;
  port: number;
  records: ProxyRecord[];
  add(rule: FaultRule): void;
  /** Rules that have not fired all their times yet. */
  pending(): FaultRule[];
  close(): Promise<void>;
}

interface LiveRule extends FaultRule {
  skipped: number;
  fired: number;
}

/** Starts a proxy to `upstream` (`127.0.0.1:<port>`). */
export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const [upstreamHost = '127.0.0.1', upstreamPort = '80'] = upstream.split(':');
  const agent = new Agent({ keepAlive: true });
  const rules: LiveRule[] = [];
  const records: ProxyRecord[] = [];

  const server = createServer((req, res) => {
    const record = recordOf(req);
    records.push(record);
    const rule = take(rules, record);
    if (rule) record.fault = rule.fault.kind;
    const target = { host: upstreamHost, port: Number(upstreamPort), agent };
    handle(req, res, rule?.fault, target);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    host: `127.0.0.1:${port}`,
    port,
    records,
    add: (rule) => rules.push({ ...rule, skipped: 0, fired: 0 }),
    pending: () => rules.filter((r) => r.fired < (r.times ?? 1)),
    close: () =>
      new Promise<void>((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function recordOf(req: IncomingMessage): ProxyRecord {
  const record: ProxyRecord = {
    method: req.method ?? '',
    path: new URL(req.url ?? '/', 'http://x').pathname,
  };
  if (req.headers.range) record.range = req.headers.range;
  const contentRange = req.headers['content-range'];
  if (typeof contentRange === 'string') record.contentRange = contentRange;
  return record;
}

/** The first rule matching `record` that is due to fire, counting skips and firings. */
function take(rules: LiveRule[], record: ProxyRecord): LiveRule | undefined {
  for (const rule of rules) {
    if (rule.fired >= (rule.times ?? 1)) continue;
    if (rule.method && rule.method !== record.method) continue;
    if (rule.path && !rule.path.test(record.path)) continue;
    if (rule.skipped < (rule.skip ?? 0)) {
      rule.skipped++;
      continue;
    }
    rule.fired++;
    return rule;
  }
  return undefined;
}

interface Target {
  host: string;
  port: number;
  agent: Agent;
}

function handle(req: IncomingMessage, res: ServerResponse, fault: Fault | undefined, to: Target) {
  if (fault?.kind === 'status') {
    req.resume();
    req.on('end', () => res.writeHead(fault.status, fault.headers ?? {}).end());
    return;
  }
  if (fault?.kind === 'cut-request') return cutRequest(req, fault.afterBytes);
  if (fault?.kind === 'stall') {
    req.resume();
    const timer = setTimeout(() => req.socket.destroy(), fault.ms);
    req.socket.once('close', () => clearTimeout(timer));
    return;
  }
  forward(req, res, fault, to);
}

function cutRequest(req: IncomingMessage, afterBytes: number): void {
  let seen = 0;
  const cut = () => req.socket.destroy();
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen >= afterBytes) cut();
  });
  req.on('end', cut);
}

function forward(req: IncomingMessage, res: ServerResponse, fault: Fault | undefined, to: Target) {
  const upstream = request({
    host: to.host,
    port: to.port,
    agent: to.agent,
    method: req.method,
    path: req.url,
    headers: req.headers,
  });
  upstream.on('response', (answer) => respond(answer, res, fault));
  upstream.on('error', () => res.socket?.destroy());

  if (fault?.kind === 'cut-forwarded') return forwardPart(req, upstream, fault.afterBytes);
  req.pipe(upstream);
}

/** Passes the first `afterBytes` of the request body on, then drops both connections. */
function forwardPart(req: IncomingMessage, upstream: ReturnType<typeof request>, bytes: number) {
  let seen = 0;
  req.on('data', (chunk: Buffer) => {
    if (seen >= bytes) return;
    const part = chunk.subarray(0, bytes - seen);
    seen += part.length;
    upstream.write(part);
    if (seen < bytes) return;
    // Let the part reach the registry before both sides go away.
    setTimeout(() => {
      upstream.destroy();
      req.socket.destroy();
    }, 50);
  });
}

function respond(answer: IncomingMessage, res: ServerResponse, fault: Fault | undefined): void {
  res.writeHead(answer.statusCode ?? 502, answer.headers);
  res.on('close', () => answer.destroy());
  let offset = 0;
  let cut = false;
  answer.on('data', (chunk: Buffer) => {
    if (cut) return;
    const start = offset;
    offset += chunk.length;
    if (fault?.kind === 'truncate' && offset > fault.afterBytes) {
      cut = true;
      res.write(chunk.subarray(0, Math.max(0, fault.afterBytes - start)), () =>
        setTimeout(() => res.socket?.destroy(), 20));
      answer.destroy();
      return;
    }
    if (fault?.kind === 'corrupt' && fault.atByte >= start && fault.atByte < offset) {
      const altered = Buffer.from(chunk);
      altered.writeUInt8(altered.readUInt8(fault.atByte - start) ^ 0xff, fault.atByte - start);
      chunk = altered;
    }
    if (!res.write(chunk)) {
      answer.pause();
      res.once('drain', () => answer.resume());
    }
  });
  answer.on('end', () => res.end());
  answer.on('error', () => res.socket?.destroy());
}
