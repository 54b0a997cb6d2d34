/**
 * The infra checks. Each returns the problems it finds (empty: fine), so tests can assert both
 * that the real infra/ passes and that a deliberately broken copy fails.
 */
import { Ref, text, type ResourceInstance, type Value } from './bicep-eval.js';
import {
  appSettings,
  at,
  declarationOf,
  moduleOf,
  resourcesOf,
  type InfraModel,
} from './infra-model.js';
import { CONTRACT, LOCAL_ONLY } from './code-settings.js';

// App settings

/** Suffixes that make a `connection` prefix an identity-based connection. */
const IDENTITY_SUFFIXES = ['__fullyQualifiedNamespace', '__accountName', '__blobServiceUri'];

/** Settings that must never be set in Azure: secrets, local-only, or rejected by Flex. */
export const FORBIDDEN_SETTINGS: readonly string[] = [
  'AzureWebJobsStorage',
  'FUNCTIONS_WORKER_RUNTIME',
  'FUNCTIONS_EXTENSION_VERSION',
  'WEBSITE_RUN_FROM_PACKAGE',
  'CCPIPE_STORAGE_CONNECTION_STRING',
  'CCPIPE_REGISTRY_USERNAME',
  'CCPIPE_REGISTRY_PASSWORD',
  'CCPIPE_HOST',
  'CCPIPE_PORT',
];

/** Every setting the code reads (less the local-only ones) and the contract is defined. */
export function missingSettings(model: InfraModel, readByCode: readonly string[]): string[] {
  const defined = new Set(Object.keys(appSettings(model)));
  const needed = [...new Set([...readByCode, ...CONTRACT])].filter((n) => !LOCAL_ONLY.has(n));
  return needed
    .filter((name) => !defined.has(name) && !IDENTITY_SUFFIXES.some((s) => defined.has(name + s)))
    .map((name) => `app setting ${name} is read by the code but not defined in infra`);
}

/** No forbidden setting, no secret-looking value, identity-based connections only. */
export function settingProblems(model: InfraModel): string[] {
  const settings = appSettings(model);
  const problems = FORBIDDEN_SETTINGS.filter((n) => n in settings)
    .map((n) => `app setting ${n} must not be set in Azure`);
  for (const [name, value] of Object.entries(settings)) {
    const reason = secretLooking(name, text(value));
    if (reason) problems.push(`app setting ${name} ${reason}`);
  }
  return [...problems, ...identitySettingProblems(settings)];
}

const SECRET_PATTERNS: readonly [RegExp, string][] = [
  [/AccountKey=/i, 'carries a storage account key'],
  [/SharedAccessKey/i, 'carries a shared access key'],
  [/Endpoint=sb:\/\//i, 'is a Service Bus connection string'],
  [/DefaultEndpointsProtocol=/i, 'is a storage connection string'],
  [/list(Keys|ConnectionStrings|Secrets|Credentials?)\(/, 'reads keys with a list* function'],
  [/InstrumentationKey=/i, 'carries an instrumentation key literal'],
];

function secretLooking(name: string, value: string): string | undefined {
  // The component's connection string only locates it: local auth is off (checked apart).
  if (name === 'APPLICATIONINSIGHTS_CONNECTION_STRING') {
    return value === '${monitoring.outputs.connectionString}' ? undefined : 'is not the output';
  }
  return SECRET_PATTERNS.find(([pattern]) => pattern.test(value))?.[1];
}

function identitySettingProblems(settings: Record<string, Value>): string[] {
  const problems: string[] = [];
  for (const prefix of ['AzureWebJobsStorage', 'CCPIPE_SERVICE_BUS']) {
    if (settings[`${prefix}__credential`] !== 'managedidentity') {
      problems.push(`app setting ${prefix}__credential must be managedidentity`);
    }
    const clientId = text(settings[`${prefix}__clientId`]);
    if (clientId !== text(settings.AZURE_CLIENT_ID)) {
      problems.push(`app setting ${prefix}__clientId must be the identity's client id`);
    }
  }
  if (!text(settings.CCPIPE_WEBHOOK_SECRET).startsWith('@Microsoft.KeyVault(SecretUri=')) {
    problems.push('app setting CCPIPE_WEBHOOK_SECRET must be a Key Vault reference');
  }
  if (!text(settings.AZURE_CLIENT_ID).includes('identity.outputs.clientId')) {
    problems.push('app setting AZURE_CLIENT_ID must be the user-assigned identity\'s client id');
  }
  return problems;
}

/** CCPIPE_STORAGE_BLOB_URL is the blob endpoint of an account with ccpipe's containers. */
export function storageProblems(model: InfraModel, containers: readonly string[]): string[] {
  const module = moduleOf(model, appSettings(model).CCPIPE_STORAGE_BLOB_URL);
  if (!module) return ['CCPIPE_STORAGE_BLOB_URL is not the output of a storage module'];
  const made = module.params.containers;
  const missing = containers.filter((c) => !(Array.isArray(made) && made.includes(c)));
  return missing.map((c) => `container ${c} is not created in the CCPIPE_STORAGE_BLOB_URL account`);
}

// Local auth off everywhere

const LOCAL_AUTH_OFF: readonly [string, string, Value][] = [
  ['Microsoft.Storage/storageAccounts', 'properties.allowSharedKeyAccess', false],
  ['Microsoft.ServiceBus/namespaces', 'properties.disableLocalAuth', true],
  ['Microsoft.Insights/components', 'properties.DisableLocalAuth', true],
  ['Microsoft.ContainerRegistry/registries', 'properties.adminUserEnabled', false],
  ['Microsoft.KeyVault/vaults', 'properties.enableRbacAuthorization', true],
  ['Microsoft.KeyVault/vaults', 'properties.sku.name', 'premium'],
  ['Microsoft.KeyVault/vaults', 'properties.enablePurgeProtection', true],
  ['Microsoft.Web/sites/basicPublishingCredentialsPolicies', 'properties.allow', false],
];

/** Keys and local accounts are off: storage keys, SAS, admin users, access policies. */
export function localAuthProblems(model: InfraModel): string[] {
  const problems: string[] = [];
  for (const [type, path, expected] of LOCAL_AUTH_OFF) {
    const resources = resourcesOf(model, type);
    if (resources.length === 0) problems.push(`no ${type} in infra`);
    for (const r of resources.filter((r) => at(r, path) !== expected)) {
      problems.push(`${r.symbol} (${type}): ${path} must be ${String(expected)}`);
    }
  }
  return problems;
}

// Service Bus

export interface BusExpectations {
  queues: readonly string[];
  topics: readonly string[];
  /** ccpipe's own delivery limit (config default and app setting). */
  maxDequeueCount: number;
  /** The `deployments` subscription this app reads (CCPIPE_CLUSTER_NAME). */
  clusterName: string;
}

/** Every entity ccpipe uses exists with the delivery properties it relies on. */
export function serviceBusProblems(model: InfraModel, expected: BusExpectations): string[] {
  const queues = byName(resourcesOf(model, 'Microsoft.ServiceBus/namespaces/queues'));
  const topics = byName(resourcesOf(model, 'Microsoft.ServiceBus/namespaces/topics'));
  const entities = [...expected.queues, ...expected.topics];
  const wanted = [...expected.queues, ...entities.map((e) => `${e}-failed`)];
  const problems = [
    ...wanted.filter((q) => !queues.has(q)).map((q) => `queue ${q} is missing`),
    ...expected.topics.filter((t) => !topics.has(t)).map((t) => `topic ${t} is missing`),
  ];
  for (const queue of queues.values()) problems.push(...deliveryProblems(queue, expected));
  for (const queue of queues.values()) problems.push(...duplicateProblems(queue));
  for (const topic of topics.values()) problems.push(...duplicateProblems(topic));
  return [...problems, ...subscriptionProblems(model, expected)];
}

function subscriptionProblems(model: InfraModel, expected: BusExpectations): string[] {
  const subscriptions = resourcesOf(model, 'Microsoft.ServiceBus/namespaces/topics/subscriptions');
  const rules = resourcesOf(model, 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules');
  const problems = subscriptions.flatMap((s) => deliveryProblems(s, expected));
  if (!subscriptions.some((s) => s.body.name === expected.clusterName)) {
    problems.push(`no deployments subscription for cluster ${expected.clusterName}`);
  }
  for (const subscription of subscriptions) {
    const own = rules.filter((r) => parentIndex(r) === subscription.index);
    problems.push(...ruleProblems(String(subscription.body.name), own));
  }
  return problems;
}

/** A subscription has one rule, `$Default` replaced by `cluster = <its name>`. */
function ruleProblems(cluster: string, rules: ResourceInstance[]): string[] {
  const [rule] = rules;
  if (rules.length !== 1 || !rule) return [`subscription ${cluster} must have exactly one rule`];
  const problems: string[] = [];
  if (rule.body.name !== '$Default') problems.push(`subscription ${cluster}: $Default remains`);
  if (at(rule, 'properties.filterType') !== 'CorrelationFilter') {
    problems.push(`subscription ${cluster}: the rule must be a correlation filter`);
  }
  if (at(rule, 'properties.correlationFilter.properties.cluster') !== cluster) {
    problems.push(`subscription ${cluster}: the filter must match cluster = ${cluster}`);
  }
  return problems;
}

function parentIndex(rule: ResourceInstance): number | undefined {
  const parent = rule.body.parent;
  const last = parent instanceof Ref ? parent.path[parent.path.length - 1] : undefined;
  return last === undefined ? undefined : Number(last);
}

function deliveryProblems(entity: ResourceInstance, expected: BusExpectations): string[] {
  const name = `${entity.type.split('/').pop()} ${String(entity.body.name)}`;
  const problems: string[] = [];
  const max = at(entity, 'properties.maxDeliveryCount');
  if (typeof max !== 'number' || max <= expected.maxDequeueCount) {
    const limit = expected.maxDequeueCount;
    problems.push(`${name}: maxDeliveryCount ${String(max)} must exceed ${limit}`);
  }
  if (at(entity, 'properties.lockDuration') !== 'PT5M') problems.push(`${name}: lock must be PT5M`);
  if (at(entity, 'properties.requiresSession') !== false) {
    problems.push(`${name}: requiresSession must be false`);
  }
  return problems;
}

function duplicateProblems(entity: ResourceInstance): string[] {
  if (at(entity, 'properties.requiresDuplicateDetection') === true) return [];
  return [`${String(entity.body.name)}: requiresDuplicateDetection must be true`];
}

function byName(resources: ResourceInstance[]): Map<string, ResourceInstance> {
  return new Map(resources.map((r) => [String(r.body.name), r]));
}

// host.json

/** The Service Bus extension settings ccpipe relies on, consistent with the function timeout. */
export function hostJsonProblems(host: Record<string, unknown>): string[] {
  const bus = ((host.extensions ?? {}) as Record<string, Record<string, unknown>>).serviceBus;
  if (!bus) return ['host.json has no extensions.serviceBus'];
  const problems: string[] = [];
  if (bus.prefetchCount !== 0) problems.push('serviceBus.prefetchCount must be 0');
  if (bus.autoCompleteMessages !== true) problems.push('serviceBus.autoCompleteMessages: true');
  const calls = bus.maxConcurrentCalls;
  if (typeof calls !== 'number' || calls < 1) problems.push('serviceBus.maxConcurrentCalls');
  const renewal = seconds(bus.maxAutoLockRenewalDuration);
  const timeout = seconds(host.functionTimeout);
  if (!(renewal >= timeout && timeout > 0)) {
    problems.push('serviceBus.maxAutoLockRenewalDuration must cover functionTimeout');
  }
  return problems;
}

/** `hh:mm:ss` as seconds; NaN when malformed. */
export function seconds(value: unknown): number {
  const match = /^(\d+):(\d\d):(\d\d)$/.exec(String(value));
  if (!match) return NaN;
  return Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]);
}

// Roles

/** Built-in role ids by name (independent of infra/app/roles.bicep, which must agree). */
export const ROLE_IDS: Readonly<Record<string, string>> = {
  acrPush: '8311e382-0749-4cb8-b61a-304f252e45ec',
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d',
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39',
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0',
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b',
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1',
  keyVaultCryptoOfficer: '14b46e9e-c2b7-41b4-b07b-48a6ebf60603',
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6',
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb',
  networkContributor: '4d97b98b-1d4f-4787-a291-c67834d212e7',
  aksRbacWriter: 'a7ffa36f-339b-4b5c-8bdf-e2c188b2c0eb',
};

/** Broad roles that must appear nowhere in infra/. */
export const FORBIDDEN_ROLES: Readonly<Record<string, string>> = {
  Owner: '8e3af657-a8ff-443c-a75c-2fe8c4bcb635',
  Contributor: 'b24988ac-6180-42a0-ab88-20f7382dd24c',
  'User Access Administrator': '18d7d88d-d35e-4fb5-a5c3-7773c20a72d9',
  'Role Based Access Control Administrator': 'f58310d9-a9f6-439a-9e8d-f62e7b41a168',
  'Key Vault Administrator': '00482a5a-887f-4fb3-b363-3b7fe8e74483',
  'Key Vault Secrets Officer': 'b86a8fe4-baba-4e7e-bc72-5e1c0de6ad7f',
  'Azure Service Bus Data Owner': '090c5cfd-751d-490a-894a-3ce6f1109419',
  'Storage Account Contributor': '17d1049b-9a84-46fb-8f53-869881c3d3ab',
  'Storage Queue Data Contributor': '974c5e8b-45b9-4653-ba55-5f855dd0fb88',
  'Azure Kubernetes Service RBAC Cluster Admin': 'b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b',
  'Azure Kubernetes Service Cluster Admin Role': '0ab0b1a8-8aac-4efd-b8c2-3ee1fb270be8',
};

/** A role assignment as the checks see it. */
export interface Assignment {
  symbol: string;
  file: string;
  role: string | undefined;
  scopeType: string | undefined;
  principal: string;
  comments: string[];
}

export function assignments(model: InfraModel): Assignment[] {
  return resourcesOf(model, 'Microsoft.Authorization/roleAssignments').map((r) => {
    const id = text(at(r, 'properties.roleDefinitionId'));
    const guid = /roleDefinitions\/([0-9a-f-]{36})$/.exec(id)?.[1];
    const role = Object.keys(ROLE_IDS).find((name) => ROLE_IDS[name] === guid) ?? guid;
    const scope = declarationOf(model, r.body.scope);
    const principal = text(at(r, 'properties.principalId'));
    const { symbol, file, comments } = r;
    return { symbol, file, role, scopeType: scope?.type, principal, comments };
  });
}

/** The identity's (role, scope type) pairs the code's operations need. */
export const NEEDED_ROLES: readonly [string, string][] = [
  ['acrPush', 'Microsoft.ContainerRegistry/registries'],
  ['serviceBusDataSender', 'Microsoft.ServiceBus/namespaces'],
  ['serviceBusDataReceiver', 'Microsoft.ServiceBus/namespaces'],
  ['storageBlobDataContributor', 'Microsoft.Storage/storageAccounts'],
  ['storageBlobDataOwner', 'Microsoft.Storage/storageAccounts'],
  ['keyVaultCryptoOfficer', 'Microsoft.KeyVault/vaults'],
  ['keyVaultSecretsUser', 'Microsoft.KeyVault/vaults/secrets'],
  ['monitoringMetricsPublisher', 'Microsoft.Insights/components'],
];

/** The deployer's role when a cluster is deployed. */
export const CLUSTER_ROLE: [string, string] = [
  'aksRbacWriter',
  'Microsoft.ContainerService/managedClusters/namespaces',
];

const IDENTITY = '${identity.outputs.principalId}';

/** Needed roles are assigned to the identity at the right scope; nothing else, all commented. */
export function roleProblems(model: InfraModel, needed: readonly [string, string][]): string[] {
  const all = assignments(model);
  const mine = all.filter((a) => a.principal === IDENTITY);
  const problems = needed
    .filter(([role, type]) => !mine.some((a) => a.role === role && a.scopeType === type))
    .map(([role, type]) => `the identity lacks ${role} on a ${type}`);
  for (const a of all) {
    const where = `${a.file} ${a.symbol}`;
    if (!a.role || !(a.role in ROLE_IDS)) problems.push(`${where}: role ${a.role} not allowed`);
    if (!a.scopeType) problems.push(`${where}: scope must be one resource of this file`);
    if (a.comments.length === 0) problems.push(`${where}: say why in a comment above it`);
  }
  return problems;
}

/** roles.bicep agrees with ROLE_IDS; no raw role GUID elsewhere; no forbidden role anywhere. */
export function roleSourceProblems(
  rolesVar: Value,
  sources: Readonly<Record<string, string>>,
): string[] {
  const roles = (rolesVar ?? {}) as Record<string, Value>;
  const problems = Object.entries(roles)
    .filter(([name, id]) => ROLE_IDS[name] !== id)
    .map(([name, id]) => `roles.${name} = ${String(id)} is not the allowed built-in role`);
  for (const [file, source] of Object.entries(sources)) {
    for (const [name, id] of Object.entries(FORBIDDEN_ROLES)) {
      if (source.includes(id)) problems.push(`${file} names the forbidden role ${name}`);
    }
    const guids = source.match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g);
    if (guids && !file.endsWith('roles.bicep')) {
      problems.push(`${file} has a raw GUID (${guids[0]}); use roles.bicep`);
    }
  }
  return problems;
}
