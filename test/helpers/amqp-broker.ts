/**
 * A loopback AMQP 1.0 test broker, built on `rhea`'s server mode, that speaks enough of Azure
 * Service Bus for the real `@azure/service-bus` 7.9.5 client. Connect with
 * `broker.connectionString` (`UseDevelopmentEmulator=true`: plain AMQP, no TLS).
 *
 * Covered:
 * - SASL ANONYMOUS and PLAIN (any credentials), CBS `put-token` on `$cbs` answered 200;
 * - queues, topics and subscriptions, created through this module's API (not `$management`);
 *   subscription rules: correlation filters, a small SQL subset (`=`, `<>`, `AND`) and
 *   true/false filters; a subscription created without rules gets `$Default` (match all);
 * - send, single (format 0) and batched (format 0x80013700: data sections of encoded messages);
 *   duplicate detection by messageId within a per-entity window (off unless configured); a
 *   message sent without an id gets one, as Service Bus does;
 * - receive in receiveAndDelete and peekLock, with the annotations the SDK reads
 *   (`x-opt-sequence-number`, `x-opt-enqueued-time`, `x-opt-locked-until`) and the header's
 *   `delivery-count` (prior failed deliveries: 0 on the first delivery, as Service Bus reports);
 * - settlement: accepted = complete; released/modified = abandon (redelivered with delivery
 *   count + 1); rejected = dead-letter into `<entity>/$DeadLetterQueue` with `DeadLetterReason`
 *   and `DeadLetterErrorDescription` from the rejection's error info; past `maxDeliveryCount`
 *   (default 10) an abandoned message is dead-lettered with reason `MaxDeliveryCountExceeded`;
 * - unknown entities: the link is refused with `amqp:not-found`.
 *
 * NOTE: not covered, because no ccpipe code path needs them yet: `$management` operations
 * (peek, renewLock, schedule, cancel, defer receive, rules, sessions state) are answered with
 * status 501; sessions (`group-id` is stored but ignored); scheduled messages
 * (`x-opt-scheduled-enqueue-time` is delivered at once); defer (a `modified` outcome with
 * `undeliverable-here` is refused with `amqp:not-implemented` and the message stays available);
 * message time-to-live; lock expiry: `locked-until` is advisory, a lock is never lost by time,
 * so renewLock time-outs cannot be tested. A message still locked when its receiver link or
 * connection goes away is returned at once with delivery count + 1 (Service Bus would wait
 * for the lock to expire). Settling through `$management` (after the link closed) fails.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo, Server, Socket } from 'node:net';
import rhea from 'rhea';
import type {
  AmqpError,
  Connection,
  Container,
  Delivery,
  EventContext,
  Message,
  Receiver,
  Sender,
} from 'rhea';

const BATCH_FORMAT = 0x80013700;
const DEFAULT_MAX_DELIVERY_COUNT = 10;
const DEFAULT_LOCK_DURATION_MS = 60_000;
const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024;
const DEAD_LETTER_QUEUE = '$deadletterqueue';

/** Settings of a queue or subscription (the receiving side). */
export interface ReceivableOptions {
  /** Deliveries before an abandoned message is dead-lettered (default 10, minimum 1). */
  maxDeliveryCount?: number;
  /** The `locked-until` the broker announces (default 60 s); see the NOTE on lock expiry. */
  lockDurationMs?: number;
}

/** Settings of the sending side of a queue or topic. */
export interface SendableOptions {
  /** Drops a message whose messageId was seen within this window; off when absent. */
  duplicateDetectionWindowMs?: number;
  /**
   * Advertised as the sender link's max-message-size, which `createMessageBatch` sizes batches
   * by (default 256 KiB, Service Bus Standard). NOTE: not enforced by the broker.
   */
  maxMessageBytes?: number;
}

/** Settings of a queue: both sides. */
export type QueueOptions = ReceivableOptions & SendableOptions;
/** Settings of a topic: the sending side (its subscriptions have their own). */
export type TopicOptions = SendableOptions;

/** Settings and rules of a subscription. */
export interface SubscriptionOptions extends ReceivableOptions {
  /** Default: one rule `$Default` matching every message, as Service Bus creates it. */
  rules?: SubscriptionRule[];
}

/** An application property value filters compare with. */
export type PropertyValue = string | number | boolean;

/** Matches when every field given equals the message's (system and application properties). */
export interface CorrelationRuleFilter {
  kind: 'correlation';
  subject?: string;
  correlationId?: string;
  messageId?: string;
  to?: string;
  replyTo?: string;
  contentType?: string;
  sessionId?: string;
  applicationProperties?: Record<string, PropertyValue>;
}

/**
 * A SQL filter subset: comparisons `<property> = <literal>` or `<property> <> <literal>` joined
 * by `AND`. Properties: `sys.Label`/`sys.Subject`, `sys.CorrelationId`, `sys.MessageId`,
 * `sys.To`, `sys.ReplyTo`, `sys.ContentType`, `sys.SessionId`, `user.<name>` or a bare
 * `<name>` (application property). Literals: `'text'` (`''` escapes a quote), numbers, TRUE,
 * FALSE. A missing property makes its comparison false. Anything else is refused when the rule
 * is added.
 */
export interface SqlRuleFilter {
  kind: 'sql';
  expression: string;
}

/** A subscription rule's filter; `true` and `false` match every message or none. */
export type RuleFilter = CorrelationRuleFilter | SqlRuleFilter | { kind: 'true' | 'false' };

/** A named rule; a message enters a subscription when any of its rules matches. */
export interface SubscriptionRule {
  name: string;
  filter: RuleFilter;
}

/** An AMQP error the broker answers transfers with, for failure tests. */
export interface SendFault {
  /** E.g. `com.microsoft:server-busy`, `amqp:link:message-size-exceeded`. */
  condition: string;
  description?: string;
  /** Transfers to reject (default 1). */
  times?: number;
}

/** A stored message as tests see it. */
export interface BrokerMessage {
  sequenceNumber: number;
  messageId: string | undefined;
  correlationId: string | undefined;
  subject: string | undefined;
  contentType: string | undefined;
  applicationProperties: Record<string, unknown>;
  /** The body as UTF-8 text when it is a single data section. */
  text: string | undefined;
  deliveryCount: number;
  state: 'available' | 'locked';
  enqueuedAt: Date;
  deadLetterReason: string | undefined;
  deadLetterErrorDescription: string | undefined;
}

/** A running broker: connection details, entity set-up and inspection. */
export interface TestBroker {
  readonly host: string;
  readonly port: number;
  /** For `new ServiceBusClient(…)`; the key is a dummy the broker does not check. */
  readonly connectionString: string;
  /** Audiences of the CBS put-token requests seen (never the tokens). */
  readonly tokenAudiences: readonly string[];
  /** Broker failures (a handler threw; the link or connection was closed): expect none. */
  readonly faults: readonly string[];
  createQueue(name: string, options?: QueueOptions): void;
  createTopic(name: string, options?: TopicOptions): void;
  createSubscription(topic: string, name: string, options?: SubscriptionOptions): void;
  addRule(topic: string, subscription: string, rule: SubscriptionRule): void;
  removeRule(topic: string, subscription: string, ruleName: string): void;
  /** Rejects the next transfers to a queue or topic with the fault's error. */
  injectSendFault(path: string, fault: SendFault): void;
  /** Active messages (available and locked) of a queue or `topic/Subscriptions/name`. */
  messages(path: string): BrokerMessage[];
  /** The dead-letter sub-queue of a queue or `topic/Subscriptions/name`. */
  deadLetters(path: string): BrokerMessage[];
  /** Messages a queue or topic dropped as duplicates. */
  duplicatesDropped(path: string): number;
  /** Open AMQP connections. */
  connectionCount(): number;
  /** Closes every connection and stops listening. */
  close(): Promise<void>;
}

/** Starts a broker on a free port of 127.0.0.1. */
export async function startAmqpBroker(): Promise<TestBroker> {
  const broker = new Broker();
  await broker.listen();
  return broker;
}

// ---------------------------------------------------------------------------------------------
// Model

interface StoredMessage {
  message: Message;
  sequenceNumber: number;
  enqueuedAt: number;
  deliveryCount: number;
  locked: boolean;
}

/** One receiver link of a client (a sender link of the broker) reading a store. */
interface Consumer {
  link: Sender;
  store: MessageStore;
  peekLock: boolean;
  /** Locked messages delivered on this link, by delivery. */
  held: Map<Delivery, StoredMessage>;
  /** Deliveries handed to rhea that it may not have transmitted yet. */
  pending: Delivery[];
}

type Outcome = 'complete' | 'abandon' | 'dead-letter';

interface ReceiveSettings {
  maxDeliveryCount: number;
  lockDurationMs: number;
}

/** The messages of a queue, a subscription or a dead-letter sub-queue, with its readers. */
class MessageStore {
  readonly available: StoredMessage[] = [];
  readonly locked = new Set<StoredMessage>();
  readonly consumers: Consumer[] = [];
  cursor = 0;

  constructor(
    readonly path: string,
    readonly settings: ReceiveSettings,
    /** Absent on a dead-letter sub-queue. */
    readonly deadLetter?: MessageStore,
  ) {}

  /** Puts a message back in sequence order. */
  restore(stored: StoredMessage): void {
    stored.locked = false;
    this.locked.delete(stored);
    const at = this.available.findIndex((m) => m.sequenceNumber > stored.sequenceNumber);
    this.available.splice(at < 0 ? this.available.length : at, 0, stored);
  }
}

class Dedup {
  private readonly seen = new Map<string, number>();
  dropped = 0;

  constructor(private readonly windowMs: number) {}

  /** True when the id was seen within the window; records it otherwise. */
  isDuplicate(id: unknown): boolean {
    if (id === undefined || id === null) return false;
    const key = Buffer.isBuffer(id) ? id.toString('hex') : String(id);
    const now = Date.now();
    const last = this.seen.get(key);
    if (last !== undefined && now - last < this.windowMs) {
      this.dropped++;
      return true;
    }
    this.seen.set(key, now);
    return false;
  }
}

interface Sendable {
  name: string;
  dedup: Dedup | undefined;
  maxMessageBytes: number;
  faults: SendFault[];
}

interface Queue extends Sendable {
  kind: 'queue';
  store: MessageStore;
}

interface Subscription {
  store: MessageStore;
  rules: Map<string, (message: Message) => boolean>;
}

interface Topic extends Sendable {
  kind: 'topic';
  subscriptions: Map<string, Subscription>;
}

/** rhea 3.0.5 link internals the broker relies on (absent from rhea's typings). */
interface LinkInternals {
  credit: number;
  local: { attach: Record<string, unknown> };
  session: { outgoing: { next_pending_delivery: number; available(): number } };
}

class BrokerError extends Error {
  constructor(
    readonly condition: string,
    message: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// Broker

class Broker implements TestBroker {
  readonly host = '127.0.0.1';
  port = 0;
  readonly tokenAudiences: string[] = [];
  readonly faults: string[] = [];

  private readonly container: Container;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly connections = new Set<Connection>();
  private readonly queues = new Map<string, Queue>();
  private readonly topics = new Map<string, Topic>();
  private readonly consumers = new Map<Sender, Consumer>();
  private readonly inbound = new Map<Receiver, Queue | Topic>();
  private readonly controlSenders = new Set<Sender>();
  private readonly controlReceivers = new Set<Receiver>();
  private sequence = 0;

  constructor() {
    this.container = rhea.create_container({
      id: 'ccpipe-test-broker',
      autoaccept: false,
      treat_modified_as_released: false,
    });
    this.container.sasl_server_mechanisms.enable_anonymous();
    this.container.sasl_server_mechanisms.enable_plain(() => true);
    this.registerHandlers();
  }

  get connectionString(): string {
    return (
      `Endpoint=sb://${this.host}:${this.port};SharedAccessKeyName=k;SharedAccessKey=v;` +
      'UseDevelopmentEmulator=true;'
    );
  }

  async listen(): Promise<void> {
    const server = this.container.listen({ host: this.host, port: 0 });
    this.server = server;
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });

    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    this.port = (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;

    for (const connection of this.connections) connection.close();
    await waitUntil(() => this.sockets.size === 0, 500);
    for (const socket of this.sockets) socket.destroy();

    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.connections.clear();
  }

  connectionCount(): number {
    return this.connections.size;
  }

  // --- entities --------------------------------------------------------------------------

  createQueue(name: string, options: QueueOptions = {}): void {
    const key = this.newEntityKey(name);
    const store = newStore(name, options);
    this.queues.set(key, { kind: 'queue', store, ...sendable(name, options) });
  }

  createTopic(name: string, options: TopicOptions = {}): void {
    const key = this.newEntityKey(name);
    this.topics.set(key, { kind: 'topic', subscriptions: new Map(), ...sendable(name, options) });
  }

  createSubscription(topic: string, name: string, options: SubscriptionOptions = {}): void {
    const owner = this.topic(topic);
    const key = name.toLowerCase();
    if (owner.subscriptions.has(key)) {
      throw new Error(`subscription ${topic}/Subscriptions/${name} already exists`);
    }

    const store = newStore(`${owner.name}/Subscriptions/${name}`, options);
    const subscription: Subscription = { store, rules: new Map() };
    owner.subscriptions.set(key, subscription);

    const rules = options.rules ?? [{ name: '$Default', filter: { kind: 'true' } }];
    for (const rule of rules) this.addRule(topic, name, rule);
  }

  addRule(topic: string, subscription: string, rule: SubscriptionRule): void {
    const sub = this.subscription(topic, subscription);
    if (sub.rules.has(rule.name)) throw new Error(`rule ${rule.name} already exists`);
    sub.rules.set(rule.name, compileFilter(rule.filter));
  }

  removeRule(topic: string, subscription: string, ruleName: string): void {
    if (!this.subscription(topic, subscription).rules.delete(ruleName)) {
      throw new Error(`rule ${ruleName} does not exist`);
    }
  }

  injectSendFault(path: string, fault: SendFault): void {
    const entity = this.sendTarget(path);
    if (!entity) throw new Error(`no queue or topic ${path}`);
    entity.faults.push({ ...fault, times: fault.times ?? 1 });
  }

  messages(path: string): BrokerMessage[] {
    return inspect(this.storeAt(path));
  }

  deadLetters(path: string): BrokerMessage[] {
    return inspect(this.storeAt(`${path}/${DEAD_LETTER_QUEUE}`));
  }

  duplicatesDropped(path: string): number {
    const entity = this.sendTarget(path);
    if (!entity) throw new Error(`no queue or topic ${path}`);
    return entity.dedup?.dropped ?? 0;
  }

  private newEntityKey(name: string): string {
    const key = name.toLowerCase();
    if (!/^[a-z0-9][a-z0-9._-]{0,259}$/.test(key)) throw new Error(`bad entity name ${name}`);
    if (this.queues.has(key) || this.topics.has(key)) throw new Error(`${name} already exists`);
    return key;
  }

  private topic(name: string): Topic {
    const topic = this.topics.get(name.toLowerCase());
    if (!topic) throw new Error(`no topic ${name}`);
    return topic;
  }

  private subscription(topic: string, name: string): Subscription {
    const sub = this.topic(topic).subscriptions.get(name.toLowerCase());
    if (!sub) throw new Error(`no subscription ${topic}/Subscriptions/${name}`);
    return sub;
  }

  private storeAt(path: string): MessageStore {
    const store = this.receiveSource(path);
    if (!store) throw new Error(`no queue, subscription or dead-letter queue ${path}`);
    return store;
  }

  /** The queue or topic a client sender link targets. */
  private sendTarget(address: string): Queue | Topic | undefined {
    const parts = entityParts(address);
    if (parts.length !== 1) return undefined;
    const key = parts[0] ?? '';
    return this.queues.get(key) ?? this.topics.get(key);
  }

  /** The store a client receiver link reads: queue, subscription, or their dead letters. */
  private receiveSource(address: string): MessageStore | undefined {
    const parts = entityParts(address);
    const deadLetter = parts[parts.length - 1] === DEAD_LETTER_QUEUE;
    if (deadLetter) parts.pop();

    let store: MessageStore | undefined;
    if (parts.length === 1) {
      store = this.queues.get(parts[0] ?? '')?.store;
    } else if (parts.length === 3 && parts[1] === 'subscriptions') {
      const topic = this.topics.get(parts[0] ?? '');
      store = topic?.subscriptions.get(parts[2] ?? '')?.store;
    }
    return deadLetter ? store?.deadLetter : store;
  }

  // --- AMQP events -----------------------------------------------------------------------

  private registerHandlers(): void {
    const on = (event: string, handler: (context: EventContext) => void): void => {
      this.container.on(event, (context: EventContext) => this.guard(event, context, handler));
    };

    on('connection_open', (c) => this.connections.add(c.connection));
    on('connection_close', (c) => this.dropConnection(c.connection));
    on('disconnected', (c) => this.dropConnection(c.connection));
    on('receiver_open', (c) => this.onInboundLink(c.receiver as Receiver));
    on('sender_open', (c) => this.onOutboundLink(c.sender as Sender));
    on('sender_close', (c) => this.dropConsumer(c.sender as Sender));
    on('receiver_close', (c) => this.dropInbound(c.receiver as Receiver));
    on('message', (c) => this.onMessage(c));
    on('sender_flow', (c) => this.onCredit(c.sender as Sender));
    on('sender_draining', (c) => this.onDrain(c.sender as Sender));
    on('accepted', (c) => this.onOutcome(c, 'complete'));
    on('released', (c) => this.onOutcome(c, 'abandon'));
    on('modified', (c) => this.onOutcome(c, 'abandon'));
    on('rejected', (c) => this.onOutcome(c, 'dead-letter'));
    // A client error on a link or connection is the client's business; keep serving.
    this.container.on('error', () => undefined);
    for (const event of ['connection_error', 'session_error', 'sender_error', 'receiver_error']) {
      this.container.on(event, () => undefined);
    }
  }

  /** A handler's bug must not crash the worker: close the link or connection it concerns. */
  private guard(event: string, context: EventContext, handler: (c: EventContext) => void): void {
    try {
      handler(context);
    } catch (error) {
      const description = `test broker failed on ${event}: ${(error as Error).message}`;
      this.faults.push(description);
      const link = context.sender ?? context.receiver;
      if (link) link.close({ condition: 'amqp:internal-error', description });
      else context.connection.close({ condition: 'amqp:internal-error', description });
    }
  }

  /** The client opened a sender: accept it if its target is an entity or a control node. */
  private onInboundLink(link: Receiver): void {
    const address = link.target?.address ?? '';
    if (isControlAddress(address)) {
      echoAttach(link);
      this.controlReceivers.add(link);
      return;
    }

    const entity = this.sendTarget(address);
    if (!entity) {
      refuse(link, 'amqp:not-found', `The messaging entity '${address}' could not be found.`);
      return;
    }
    echoAttach(link);
    internals(link).local.attach.max_message_size = entity.maxMessageBytes;
    this.inbound.set(link, entity);
  }

  /** The client opened a receiver: a consumer of a store, or the reply side of a control node. */
  private onOutboundLink(link: Sender): void {
    const address = link.source?.address ?? '';
    if (isControlAddress(address)) {
      echoAttach(link);
      this.controlSenders.add(link);
      return;
    }

    const store = this.receiveSource(address);
    if (!store) {
      refuse(link, 'amqp:not-found', `The messaging entity '${address}' could not be found.`);
      return;
    }
    echoAttach(link);

    const peekLock = link.snd_settle_mode !== 1;
    const consumer: Consumer = { link, store, peekLock, held: new Map(), pending: [] };
    this.consumers.set(link, consumer);
    store.consumers.push(consumer);
  }

  private onMessage(context: EventContext): void {
    const link = context.receiver as Receiver;
    const delivery = context.delivery as Delivery;
    if (this.controlReceivers.has(link)) {
      this.onControlRequest(link, context.message as Message);
      delivery.accept();
      return;
    }

    const entity = this.inbound.get(link);
    if (!entity) {
      delivery.reject({ condition: 'amqp:not-found', description: 'link has no entity' });
      return;
    }
    const fault = takeFault(entity);
    if (fault) {
      delivery.reject({ condition: fault.condition, description: fault.description ?? 'fault' });
      return;
    }
    try {
      this.accept(entity, context);
      delivery.accept();
    } catch (error) {
      const condition = error instanceof BrokerError ? error.condition : 'amqp:internal-error';
      delivery.reject({ condition, description: (error as Error).message });
    }
  }

  private accept(entity: Queue | Topic, context: EventContext): void {
    const raw = context.message as unknown;
    const format = (context as { format?: number }).format ?? 0;
    const messages = format === BATCH_FORMAT ? unbatch(raw) : [raw as Message];
    for (const message of messages) {
      // Service Bus gives a message without an id one (the SDK's lock renewal needs it).
      message.message_id ??= randomUUID().replace(/-/g, '');
      if (entity.dedup?.isDuplicate(message.message_id)) continue;
      if (entity.kind === 'queue') this.enqueue(entity.store, message);
      else this.publish(entity, message);
    }
  }

  private publish(topic: Topic, message: Message): void {
    for (const subscription of topic.subscriptions.values()) {
      const rules = [...subscription.rules.values()];
      if (rules.some((matches) => matches(message))) {
        this.enqueue(subscription.store, copyMessage(message));
      }
    }
  }

  private enqueue(store: MessageStore, message: Message): void {
    store.available.push({
      message,
      sequenceNumber: ++this.sequence,
      enqueuedAt: Date.now(),
      deliveryCount: 0,
      locked: false,
    });
    this.pump(store);
  }

  // --- delivery --------------------------------------------------------------------------

  /** Hands available messages to consumers with credit, round robin. */
  private pump(store: MessageStore): void {
    while (store.available.length > 0) {
      const consumer = nextConsumer(store);
      if (!consumer) return;
      this.deliver(consumer, store.available.shift() as StoredMessage);
    }
  }

  private deliver(consumer: Consumer, stored: StoredMessage): void {
    const store = consumer.store;
    const lockedUntil = consumer.peekLock ? Date.now() + store.settings.lockDurationMs : undefined;
    const tag = rhea.string_to_uuid(randomUUID());
    const delivery = consumer.link.send(outgoing(stored, lockedUntil), tag);
    consumer.pending.push(delivery);

    if (consumer.peekLock) {
      stored.locked = true;
      store.locked.add(stored);
      consumer.held.set(delivery, stored);
    }
  }

  private onCredit(link: Sender): void {
    const consumer = this.consumers.get(link);
    if (consumer) this.pump(consumer.store);
  }

  private onDrain(link: Sender): void {
    this.onCredit(link);
    link.set_drained(true);
  }

  private onOutcome(context: EventContext, outcome: Outcome): void {
    const delivery = context.delivery as Delivery;
    const consumer = this.consumers.get(context.sender as Sender);
    const stored = consumer?.held.get(delivery);
    if (!consumer || !stored) return;
    consumer.held.delete(delivery);

    const state = (delivery.remote_state ?? {}) as Record<string, unknown>;
    if (outcome === 'abandon' && state.undeliverable_here === true) {
      consumer.store.restore(stored);
      const description = 'the test broker does not implement defer';
      delivery.update(true, rejectedOutcome(notImplemented(description)));
      this.pump(consumer.store);
      return;
    }

    this.settleStored(consumer.store, stored, outcome, state);
    delivery.update(true, appliedOutcome(outcome, delivery.remote_state));
    this.pump(consumer.store);
  }

  private settleStored(
    store: MessageStore,
    stored: StoredMessage,
    outcome: Outcome,
    state: Record<string, unknown>,
  ): void {
    if (outcome === 'complete') {
      store.locked.delete(stored);
    } else if (outcome === 'abandon') {
      mergeProperties(stored.message, state.message_annotations);
      this.abandon(store, stored);
    } else {
      const info = ((state.error ?? {}) as { info?: Record<string, unknown> }).info ?? {};
      const { DeadLetterReason, DeadLetterErrorDescription, ...rest } = info;
      mergeProperties(stored.message, rest);
      this.deadLetter(store, stored, DeadLetterReason, DeadLetterErrorDescription);
    }
  }

  private abandon(store: MessageStore, stored: StoredMessage): void {
    stored.deliveryCount++;
    const max = store.settings.maxDeliveryCount;
    if (store.deadLetter && stored.deliveryCount >= max) {
      const description = `Message could not be consumed after ${max} delivery attempts.`;
      this.deadLetter(store, stored, 'MaxDeliveryCountExceeded', description);
      return;
    }
    store.restore(stored);
  }

  /** Moves a message into the store's dead-letter sub-queue (a DLQ's own message stays). */
  private deadLetter(
    store: MessageStore,
    stored: StoredMessage,
    reason: unknown,
    description: unknown,
  ): void {
    const target = store.deadLetter;
    if (!target) {
      store.restore(stored);
      return;
    }
    store.locked.delete(stored);

    const properties: Record<string, unknown> = { ...stored.message.application_properties };
    if (reason !== undefined && reason !== null) properties.DeadLetterReason = reason;
    if (description !== undefined && description !== null) {
      properties.DeadLetterErrorDescription = description;
    }
    stored.message.application_properties = properties;

    target.restore(stored);
    this.pump(target);
  }

  // --- link and connection ends ----------------------------------------------------------

  /** A receiver went away: its locked messages come back (see the NOTE on lock expiry). */
  private dropConsumer(link: Sender): void {
    this.controlSenders.delete(link);
    const consumer = this.consumers.get(link);
    if (!consumer) return;
    this.consumers.delete(link);

    const store = consumer.store;
    store.consumers.splice(store.consumers.indexOf(consumer), 1);
    for (const stored of consumer.held.values()) this.abandon(store, stored);
    consumer.held.clear();
    this.pump(store);
    if (store.deadLetter) this.pump(store.deadLetter);
  }

  private dropInbound(link: Receiver): void {
    this.inbound.delete(link);
    this.controlReceivers.delete(link);
  }

  private dropConnection(connection: Connection): void {
    this.connections.delete(connection);
    for (const link of [...this.consumers.keys()]) {
      if (link.connection === connection) this.dropConsumer(link);
    }
    for (const link of [...this.inbound.keys()]) {
      if (link.connection === connection) this.dropInbound(link);
    }
    for (const link of [...this.controlReceivers]) {
      if (link.connection === connection) this.controlReceivers.delete(link);
    }
    for (const link of [...this.controlSenders]) {
      if (link.connection === connection) this.controlSenders.delete(link);
    }
  }

  // --- control nodes ($cbs, $management) --------------------------------------------------

  private onControlRequest(link: Receiver, request: Message): void {
    const address = link.target?.address ?? '';
    const properties = (request.application_properties ?? {}) as Record<string, unknown>;
    const operation = String(properties.operation ?? '');

    let status = 501;
    let description = `the test broker does not implement ${address} operation ${operation}`;
    if (address === '$cbs' && operation === 'put-token') {
      this.tokenAudiences.push(String(properties.name ?? ''));
      status = 200;
      description = 'OK';
    }

    const reply = this.replyLink(link.connection, address, request.reply_to);
    reply?.send({
      body: null,
      correlation_id: request.message_id,
      to: request.reply_to,
      application_properties: { 'status-code': status, 'status-description': description },
    });
  }

  /** The client's receiver for a control node's replies, by `reply-to` (link name or target). */
  private replyLink(connection: Connection, address: string, replyTo: unknown): Sender | undefined {
    const candidates = [...this.controlSenders].filter(
      (s) => s.connection === connection && s.source?.address === address,
    );
    const named = candidates.find((s) => s.name === replyTo || s.target?.address === replyTo);
    return named ?? candidates[0];
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

function newStore(path: string, options: ReceivableOptions): MessageStore {
  const settings: ReceiveSettings = {
    maxDeliveryCount: Math.max(1, options.maxDeliveryCount ?? DEFAULT_MAX_DELIVERY_COUNT),
    lockDurationMs: options.lockDurationMs ?? DEFAULT_LOCK_DURATION_MS,
  };
  const deadLetter = new MessageStore(`${path}/$DeadLetterQueue`, {
    maxDeliveryCount: Number.POSITIVE_INFINITY,
    lockDurationMs: settings.lockDurationMs,
  });
  return new MessageStore(path, settings, deadLetter);
}

function sendable(name: string, options: SendableOptions): Sendable {
  const window = options.duplicateDetectionWindowMs;
  return {
    name,
    dedup: window === undefined ? undefined : new Dedup(window),
    maxMessageBytes: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    faults: [],
  };
}

/** The next injected fault of an entity, used up one transfer at a time. */
function takeFault(entity: Sendable): SendFault | undefined {
  const fault = entity.faults[0];
  if (!fault) return undefined;
  fault.times = (fault.times ?? 1) - 1;
  if (fault.times <= 0) entity.faults.shift();
  return fault;
}

/** `sb://host/a/b` or `a/b` → lower-case path segments. */
function entityParts(address: string): string[] {
  const path = address.replace(/^[a-z]+:\/\/[^/]+/i, '').replace(/^\/+/, '');
  return path.toLowerCase().split('/').filter((part) => part.length > 0);
}

function isControlAddress(address: string): boolean {
  return address === '$cbs' || address.toLowerCase().endsWith('$management');
}

function internals(link: Sender | Receiver): LinkInternals {
  return link as unknown as LinkInternals;
}

/** Answers a client's attach with the same terminus and settle modes. */
function echoAttach(link: Sender | Receiver): void {
  const attach = internals(link).local.attach;
  if (link.source?.address !== undefined) link.set_source({ address: link.source.address });
  if (link.target?.address !== undefined) link.set_target({ address: link.target.address });
  attach.snd_settle_mode = link.snd_settle_mode;
  attach.rcv_settle_mode = link.rcv_settle_mode;
}

/** Attaches with no terminus and detaches at once with the error, as AMQP refuses a link. */
function refuse(link: Sender | Receiver, condition: string, description: string): void {
  link.close({ condition, description });
}

function notImplemented(description: string): AmqpError {
  return { condition: 'amqp:not-implemented', description };
}

interface OutcomeFactory {
  accepted(): { described(): unknown };
  rejected(fields: { error?: AmqpError }): { described(): unknown };
}

/** rhea's outcome constructors, which its typings leave out. */
const outcomes = rhea.message as unknown as OutcomeFactory;

/** A `rejected` delivery state carrying an error, which fails the client's settle call. */
function rejectedOutcome(error: AmqpError): unknown {
  return outcomes.rejected({ error }).described();
}

/**
 * The state the broker settles with: the outcome it applied, without error (the SDK fails a
 * settlement whose state carries one). A settlement without state makes rhea clients print
 * `unrecognised outcome: null`.
 */
function appliedOutcome(outcome: Outcome, clientState: unknown): unknown {
  if (outcome === 'complete') return outcomes.accepted().described();
  if (outcome === 'dead-letter') return outcomes.rejected({}).described();
  const echoed = clientState as { described?: () => unknown } | undefined;
  return echoed?.described ? echoed.described() : outcomes.accepted().described();
}

/** Credit left on a consumer's link once the deliveries rhea still holds are counted. */
function capacity(consumer: Consumer): number {
  const link = internals(consumer.link);
  if (!consumer.link.is_open()) return 0;
  const outgoing = link.session.outgoing;
  consumer.pending = consumer.pending.filter((d) => d.id >= outgoing.next_pending_delivery);
  return Math.min(link.credit - consumer.pending.length, outgoing.available());
}

function nextConsumer(store: MessageStore): Consumer | undefined {
  const count = store.consumers.length;
  for (let i = 0; i < count; i++) {
    const consumer = store.consumers[(store.cursor + i) % count] as Consumer;
    if (capacity(consumer) > 0) {
      store.cursor = (store.cursor + i + 1) % count;
      return consumer;
    }
  }
  return undefined;
}

/** The message as delivered: the sender's sections plus the broker's annotations. */
function outgoing(stored: StoredMessage, lockedUntil: number | undefined): Message {
  const annotations: Record<string, unknown> = {
    ...stored.message.message_annotations,
    'x-opt-sequence-number': rhea.types.wrap_long(stored.sequenceNumber),
    'x-opt-enqueued-time': rhea.types.wrap_timestamp(stored.enqueuedAt),
  };
  if (lockedUntil !== undefined) {
    annotations['x-opt-locked-until'] = rhea.types.wrap_timestamp(lockedUntil);
  }
  return {
    ...stored.message,
    delivery_count: stored.deliveryCount,
    message_annotations: annotations,
  } as Message;
}

/** Splits a batched transfer: data sections, each an encoded message. */
function unbatch(raw: unknown): Message[] {
  if (!Buffer.isBuffer(raw)) throw new BrokerError('amqp:decode-error', 'batch is not binary');
  const envelope = decode(raw);
  const body = envelope.body as { content?: unknown; multiple?: boolean } | undefined;
  const sections = body?.multiple ? (body.content as unknown[]) : [body?.content];

  return sections.map((section) => {
    if (!Buffer.isBuffer(section)) {
      throw new BrokerError('amqp:decode-error', 'batch section is not an encoded message');
    }
    return decode(section);
  });
}

function copyMessage(message: Message): Message {
  return decode(rhea.message.encode(message));
}

function decode(buffer: Buffer): Message {
  return rhea.message.decode(buffer) as unknown as Message;
}

/** Applies `propertiesToModify` (abandon, dead-letter) to the application properties. */
function mergeProperties(message: Message, changes: unknown): void {
  if (typeof changes !== 'object' || changes === null) return;
  if (Object.keys(changes).length === 0) return;
  message.application_properties = { ...message.application_properties, ...changes };
}

function inspect(store: MessageStore): BrokerMessage[] {
  const all = [...store.available, ...store.locked];
  return all.sort((a, b) => a.sequenceNumber - b.sequenceNumber).map(view);
}

function view(stored: StoredMessage): BrokerMessage {
  const m = stored.message;
  const properties = { ...(m.application_properties as Record<string, unknown> | undefined) };
  return {
    sequenceNumber: stored.sequenceNumber,
    messageId: text(m.message_id),
    correlationId: text(m.correlation_id),
    subject: text(m.subject),
    contentType: text(m.content_type),
    applicationProperties: properties,
    text: bodyText(m.body),
    deliveryCount: stored.deliveryCount,
    state: stored.locked ? 'locked' : 'available',
    enqueuedAt: new Date(stored.enqueuedAt),
    deadLetterReason: text(properties.DeadLetterReason),
    deadLetterErrorDescription: text(properties.DeadLetterErrorDescription),
  };
}

function field(message: Message, name: string): unknown {
  return (message as unknown as Record<string, unknown>)[name];
}

function text(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  return Buffer.isBuffer(value) ? value.toString('hex') : String(value);
}

function bodyText(body: unknown): string | undefined {
  const section = body as { typecode?: number; content?: unknown; multiple?: boolean };
  if (section?.typecode === 0x75 && !section.multiple && Buffer.isBuffer(section.content)) {
    return section.content.toString('utf8');
  }
  return typeof body === 'string' ? body : undefined;
}

async function waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// ---------------------------------------------------------------------------------------------
// Filters

type Predicate = (message: Message) => boolean;

function compileFilter(filter: RuleFilter): Predicate {
  switch (filter.kind) {
    case 'true':
      return () => true;
    case 'false':
      return () => false;
    case 'correlation':
      return correlationPredicate(filter);
    case 'sql':
      return compileSql(filter.expression);
  }
}

const CORRELATION_FIELDS: Record<string, string> = {
  subject: 'subject',
  correlationId: 'correlation_id',
  messageId: 'message_id',
  to: 'to',
  replyTo: 'reply_to',
  contentType: 'content_type',
  sessionId: 'group_id',
};

function correlationPredicate(filter: CorrelationRuleFilter): Predicate {
  const system = Object.entries(CORRELATION_FIELDS).flatMap(([field, amqp]) => {
    const expected = filter[field as keyof CorrelationRuleFilter];
    return expected === undefined ? [] : [[amqp, expected] as const];
  });
  const user = Object.entries(filter.applicationProperties ?? {});

  return (message) => {
    const properties = (message.application_properties ?? {}) as Record<string, unknown>;
    return (
      system.every(([amqp, expected]) => text(field(message, amqp)) === expected) &&
      user.every(([name, expected]) => properties[name] === expected)
    );
  };
}

const SYSTEM_PROPERTIES: Record<string, string> = {
  label: 'subject',
  subject: 'subject',
  correlationid: 'correlation_id',
  messageid: 'message_id',
  to: 'to',
  replyto: 'reply_to',
  contenttype: 'content_type',
  sessionid: 'group_id',
};

const SQL_TOKEN = /\s*(?:('(?:[^']|'')*')|(<>|!=|=)|([A-Za-z_$][\w$.]*)|(-?\d+(?:\.\d+)?))/y;

interface Comparison {
  read: (message: Message) => unknown;
  equal: boolean;
  value: PropertyValue;
}

/** Compiles the SQL subset described on `SqlRuleFilter`; throws on anything else. */
function compileSql(expression: string): Predicate {
  const unsupported = () => new Error(`unsupported SQL filter: ${expression}`);
  const tokens = tokenizeSql(expression);
  if (tokens.length % 4 !== 3) throw unsupported();

  const comparisons: Comparison[] = [];
  for (let i = 0; i < tokens.length; i += 4) {
    const [property = '', operator = '', literal = '', joiner = 'AND'] = tokens.slice(i, i + 4);
    if (!['=', '<>', '!='].includes(operator) || joiner.toUpperCase() !== 'AND') {
      throw unsupported();
    }
    const read = sqlProperty(property);
    comparisons.push({ read, equal: operator === '=', value: sqlValue(literal) });
  }

  return (message) => comparisons.every((comparison) => compare(comparison, message));
}

/** SQL NULL semantics: a missing property makes `=` and `<>` false alike. */
function compare({ read, equal, value }: Comparison, message: Message): boolean {
  const actual = read(message);
  if (actual === undefined || actual === null) return false;
  return equal ? actual === value : actual !== value;
}

function tokenizeSql(expression: string): string[] {
  const tokens: string[] = [];
  SQL_TOKEN.lastIndex = 0;
  while (SQL_TOKEN.lastIndex < expression.trimEnd().length) {
    const match = SQL_TOKEN.exec(expression);
    if (!match) throw new Error(`unsupported SQL filter: ${expression}`);
    tokens.push(match[0].trim());
  }
  if (tokens.length === 0) throw new Error('empty SQL filter');
  return tokens;
}

function sqlProperty(name: string): (message: Message) => unknown {
  const [scope, ...rest] = name.split('.');
  if (rest.length === 0) return userProperty(name);
  const property = rest.join('.');
  if (scope?.toLowerCase() === 'user') return userProperty(property);

  const system = SYSTEM_PROPERTIES[property.toLowerCase()];
  const amqp = scope?.toLowerCase() === 'sys' ? system : undefined;
  if (!amqp) throw new Error(`unsupported SQL filter property: ${name}`);
  return (message) => text(field(message, amqp));
}

function userProperty(name: string): (message: Message) => unknown {
  return (message) => {
    const properties = message.application_properties as Record<string, unknown> | undefined;
    return properties?.[name];
  };
}

function sqlValue(literal: string): PropertyValue {
  if (literal.startsWith("'")) return literal.slice(1, -1).replace(/''/g, "'");
  if (/^true$/i.test(literal)) return true;
  if (/^false$/i.test(literal)) return false;
  const number = Number(literal);
  if (Number.isNaN(number)) throw new Error(`unsupported SQL literal: ${literal}`);
  return number;
}
