import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FUNCTIONS } from '../../functions/table.js';
import { loadConfig } from '../../shared/config.js';
import { QUEUES } from '../../shared/contracts/index.js';
import { MAX_EVENT_BODY_BYTES } from '../../shared/ingest/events.js';
import { LEDGER_CONTAINER, RUNS_CONTAINER } from '../../shared/pipeline/services.js';
import { Ref, text, type Value } from './bicep-eval.js';
import { evaluateDeployment } from './bicep-eval.js';
import {
  azureYamlProblems,
  commandProblems,
  eventGridProblems,
  flexProblems,
  parameterFileProblems,
  parameterTableProblems,
  type AzdFiles,
} from './azd-checks.js';
import {
  CLUSTER_ROLE,
  hostJsonProblems,
  localAuthProblems,
  missingSettings,
  NEEDED_ROLES,
  roleProblems,
  roleSourceProblems,
  serviceBusProblems,
  settingProblems,
  storageProblems,
  type BusExpectations,
} from './checks.js';
import { settingSources, settingsReadBy } from './code-settings.js';
import { appSettings, loadInfra, reader, resourcesOf, type InfraModel } from './infra-model.js';

const BICEP_FILES = [
  'infra/main.bicep',
  'infra/app/roles.bicep',
  'infra/app/rbac.bicep',
  'infra/app/aks-access.bicep',
  'infra/app/function-app.bicep',
  'infra/app/acr-events.bicep',
  'infra/core/identity.bicep',
  'infra/core/monitoring.bicep',
  'infra/core/storage.bicep',
  'infra/core/service-bus.bicep',
  'infra/core/key-vault.bicep',
  'infra/core/registry.bicep',
  'infra/core/aks.bicep',
];
const HOOKS = ['preprovision', 'postprovision', 'postdeploy'].flatMap((h) => [
  `infra/hooks/${h}.sh`,
  `infra/hooks/${h}.ps1`,
]);
const DOCS = 'docs/deployment.md';

/** The scenarios the checks run on: defaults, a full AKS deployment, extra clusters. */
const AKS = { deployAks: true, confidentialNodePool: true, eventSubscriptionEnabled: true };
const CLUSTERS = { additionalClusterNames: 'west, east' };

const TOPICS: ReadonlySet<string> = new Set(['deployments']);
const ENTITIES = [...new Set<string>([...Object.values(QUEUES), 'redeploy-requests'])];
const DEFAULT_MAX_DEQUEUE = loadConfig({ CCPIPE_WEBHOOK_SECRET: 's' }).maxDequeueCount;

function busExpectations(model: InfraModel): BusExpectations {
  const settings = appSettings(model);
  return {
    queues: ENTITIES.filter((e) => !TOPICS.has(e)),
    topics: ENTITIES.filter((e) => TOPICS.has(e)),
    maxDequeueCount: Math.max(DEFAULT_MAX_DEQUEUE, Number(settings.CCPIPE_MAX_DEQUEUE_COUNT)),
    clusterName: String(settings.CCPIPE_CLUSTER_NAME),
  };
}

function azdFiles(read = reader()): AzdFiles {
  const texts = Object.fromEntries([DOCS, ...HOOKS].map((f) => [f, read(f)]));
  return {
    azureYaml: read('azure.yaml'),
    parametersJson: read('infra/main.parameters.json'),
    texts,
  };
}

function sources(read = reader()): Record<string, string> {
  return Object.fromEntries(BICEP_FILES.map((f) => [f, read(f)]));
}

function rolesVar(read = reader()): Value {
  return evaluateDeployment('infra/app/roles.bicep', {}, read).variable('roles');
}

const eventGridFunctions = FUNCTIONS.filter((f) => f.kind === 'eventgrid').map((f) => f.name);
const codeSettings = settingsReadBy(settingSources());

describe('infra/ provides every setting the code reads', () => {
  it('finds the settings in the code it scans', () => {
    expect(codeSettings).toEqual(expect.arrayContaining([
      'CCPIPE_WEBHOOK_SECRET',
      'CCPIPE_KEY_VAULT_URL',
      'CCPIPE_MAX_DEQUEUE_COUNT',
      'CCPIPE_LOG_LEVEL',
    ]));
  });

  it.each([['defaults', {}], ['AKS', AKS]])('defines them all (%s)', (_name, params) => {
    expect(missingSettings(loadInfra(params), codeSettings)).toEqual([]);
  });

  it('uses identity-based connections, no keys, and a Key Vault reference for the secret', () => {
    expect(settingProblems(loadInfra())).toEqual([]);
    expect(settingProblems(loadInfra(AKS))).toEqual([]);
  });

  it.each([['defaults', {}], ['AKS', AKS]])('gives values the code accepts (%s)', (_n, params) => {
    const config = loadConfig(azureEnvironment(loadInfra(params)));
    expect(config.plainHttpRegistries).toEqual([]);
    expect(config.registryCredentials).toBeUndefined();
    expect(config.outputSuffix).toBe('-cc');
    expect(config.keyVaultImmutablePolicy).toBe(false);
    expect(config.keepMeasurements).toBe(2);
    expect(config.clusterName).toBe('primary');
    expect(config.serviceBusNamespace).toBe('sb-ccpipe-x.servicebus.windows.net');
  });

  it('points CCPIPE_STORAGE_BLOB_URL at the account holding the runs and ledger containers', () => {
    expect(storageProblems(loadInfra(), [RUNS_CONTAINER, LEDGER_CONTAINER])).toEqual([]);
  });

  it('lets the Functions host refuse HTTP bodies over the events limit', () => {
    const limit = text(appSettings(loadInfra()).FUNCTIONS_REQUEST_BODY_SIZE_LIMIT);
    expect(limit).toBe(String(MAX_EVENT_BODY_BYTES));
  });

  it('gives the deployer its cluster when the cluster is deployed', () => {
    const settings = appSettings(loadInfra(AKS));
    expect(text(settings.CCPIPE_KUBE_SERVER_URL)).toBe('${aks.outputs.serverUrl}');
    expect(text(settings.CCPIPE_KUBE_CA_BASE64)).toBe('${aks.outputs.caBase64}');
  });
});

describe('infra/ switches key-based access off', () => {
  it('on storage, Service Bus, Application Insights, registry, Key Vault, publishing', () => {
    expect(localAuthProblems(loadInfra())).toEqual([]);
  });
});

describe('infra/ Service Bus entities', () => {
  it.each([['defaults', {}], ['extra clusters', CLUSTERS]])('are complete (%s)', (_n, params) => {
    const model = loadInfra(params);
    expect(serviceBusProblems(model, busExpectations(model))).toEqual([]);
  });

  it('have a subscription per cluster', () => {
    const type = 'Microsoft.ServiceBus/namespaces/topics/subscriptions';
    const names = resourcesOf(loadInfra(CLUSTERS), type).map((s) => s.body.name);
    expect(names).toEqual(['primary', 'west', 'east']);
  });

  it('match host.json: renewal covers the function timeout', () => {
    const host = JSON.parse(readFileSync('host.json', 'utf8')) as Record<string, unknown>;
    expect(hostJsonProblems(host)).toEqual([]);
  });
});

describe('infra/ role assignments', () => {
  it('give the identity the roles its operations need, allowed ones only, each commented', () => {
    expect(roleProblems(loadInfra(), NEEDED_ROLES)).toEqual([]);
    expect(roleProblems(loadInfra(AKS), [...NEEDED_ROLES, CLUSTER_ROLE])).toEqual([]);
  });

  it('use the built-in ids from roles.bicep only and never a broad role', () => {
    expect(roleSourceProblems(rolesVar(), sources())).toEqual([]);
  });

  it('leave the vault alone when keys live in a Managed HSM', () => {
    const model = loadInfra({ managedHsmUri: 'https://hsm.managedhsm.azure.net' });
    const needed = NEEDED_ROLES.filter(([role]) => role !== 'keyVaultCryptoOfficer');
    expect(roleProblems(model, needed)).toEqual([]);
    expect(appSettings(model).CCPIPE_KEY_VAULT_URL).toBe('https://hsm.managedhsm.azure.net');
  });
});

describe('infra/ Function App and Event Grid', () => {
  it('is a Flex Consumption app on Node 22 running as the user-assigned identity', () => {
    expect(flexProblems(loadInfra(), 40)).toEqual([]);
    expect(flexProblems(loadInfra({ maximumInstanceCount: 7 }), 7)).toEqual([]);
  });

  it('sends ImagePushed to ingest-eventgrid except ccpipe\'s own repositories', () => {
    expect(eventGridFunctions).toEqual(['ingest-eventgrid']);
    expect(eventGridProblems(loadInfra(AKS), eventGridFunctions)).toEqual([]);
  });

  it('creates the Event Grid subscription only when asked (after the first deploy)', () => {
    const type = 'Microsoft.EventGrid/systemTopics/eventSubscriptions';
    expect(resourcesOf(loadInfra(), type)).toEqual([]);
  });
});

describe('azure.yaml, parameters, hooks and docs agree with the Bicep', () => {
  it('maps every parameter to an azd variable and no output overwrites one', () => {
    expect(parameterFileProblems(loadInfra(), azdFiles())).toEqual([]);
  });

  it('declares the api service, its hooks and the tag azd finds the app by', () => {
    expect(azureYamlProblems(loadInfra(), azdFiles())).toEqual([]);
  });

  it('uses only real variables, outputs, services and entities in commands', () => {
    expect(commandProblems(loadInfra({ additionalClusterNames: 'west' }), azdFiles())).toEqual([]);
  });

  it('documents every parameter with its variable', () => {
    const files = azdFiles();
    expect(parameterTableProblems(files.texts[DOCS] ?? '', files.parametersJson)).toEqual([]);
  });

  it('describes every parameter of every Bicep file', () => {
    const undocumented = BICEP_FILES.flatMap((file) =>
      loadInfraFile(file).filter((p) => !p.described).map((p) => `${file} ${p.name}`));
    expect(undocumented).toEqual([]);
  });

  it('links the deployment guide from the README', () => {
    expect(readFileSync('README.md', 'utf8')).toMatch(/\]\(docs\/deployment\.md\)/);
  });
});

describe('the infra checks fail on broken infra', () => {
  /** Edits of one file: each replacement must change something. */
  const edit = (path: string, ...pairs: [string | RegExp, string][]) => ({
    [path]: (source: string) => pairs.reduce((text, [from, to]) => {
      const changed = text.replace(from, to);
      if (changed === text) throw new Error(`edit of ${path} changed nothing: ${String(from)}`);
      return changed;
    }, source),
  });

  it('reports a setting the code reads that infra lacks', () => {
    const broken = loadInfra({}, edit('infra/main.bicep', [/\n {2}CCPIPE_KEY_VAULT_URL:.*/, '']));
    expect(missingSettings(broken, codeSettings)).toEqual([
      'app setting CCPIPE_KEY_VAULT_URL is read by the code but not defined in infra',
    ]);
    expect(missingSettings(loadInfra(), ['CCPIPE_NEW_THING'])).toHaveLength(1);
  });

  it('reports a connection string or account key in a setting', () => {
    const broken = loadInfra({}, edit('infra/main.bicep', [
      "AzureWebJobsStorage__credential: 'managedidentity'",
      "AzureWebJobsStorage: 'DefaultEndpointsProtocol=https;AccountKey=abc'",
    ]));
    expect(settingProblems(broken)).toEqual(expect.arrayContaining([
      'app setting AzureWebJobsStorage must not be set in Azure',
      'app setting AzureWebJobsStorage carries a storage account key',
      'app setting AzureWebJobsStorage__credential must be managedidentity',
    ]));
  });

  it('reports Service Bus entities that would dead-letter first or are missing', () => {
    const file = 'infra/core/service-bus.bicep';
    const early = loadInfra({}, edit(file, ['maxDeliveryCount = 10', 'maxDeliveryCount = 5']));
    expect(serviceBusProblems(early, busExpectations(early))).toContain(
      'queues convert: maxDeliveryCount 5 must exceed 5',
    );
    const missing = loadInfra({}, edit(file, ["  'encrypt-failed'\n", '']));
    expect(serviceBusProblems(missing, busExpectations(missing))).toEqual([
      'queue encrypt-failed is missing',
    ]);
    const catchAll = loadInfra({}, edit(file, ["name: '$Default'", "name: 'cluster'"]));
    expect(serviceBusProblems(catchAll, busExpectations(catchAll))).toEqual([
      'subscription primary: $Default remains',
    ]);
  });

  it('reports a broad role, a missing role and an unexplained assignment', () => {
    const contributor = 'b24988ac-6180-42a0-ab88-20f7382dd24c';
    const acrPush = '8311e382-0749-4cb8-b61a-304f252e45ec';
    const edits = edit('infra/app/roles.bicep', [acrPush, contributor]);
    const read = reader(edits);
    expect(roleSourceProblems(rolesVar(read), sources(read))).toEqual(expect.arrayContaining([
      `roles.acrPush = ${contributor} is not the allowed built-in role`,
      'infra/app/roles.bicep names the forbidden role Contributor',
    ]));
    expect(roleProblems(loadInfra({}, edits), NEEDED_ROLES)).toEqual(expect.arrayContaining([
      'the identity lacks acrPush on a Microsoft.ContainerRegistry/registries',
    ]));
    const silent = loadInfra({}, edit('infra/app/rbac.bicep', [/\/\/ Metrics Publisher:.*\n/, '']));
    expect(roleProblems(silent, NEEDED_ROLES)).toEqual([
      'infra/app/rbac.bicep metricsPublisher: say why in a comment above it',
    ]);
  });

  it('reports docs naming a variable, output or queue that does not exist', () => {
    const read = reader(edit(
      DOCS,
      ['azd env set CCPIPE_DEPLOY_AKS', 'azd env set CCPIPE_DEPLOYAKS'],
      ['--name convert-failed', '--name convert-failure'],
    ));
    const model = loadInfra({ additionalClusterNames: 'west' });
    expect(commandProblems(model, azdFiles(read))).toEqual([
      `${DOCS}: azd env set CCPIPE_DEPLOYAKS sets no parameter`,
      `${DOCS}: no queue convert-failure`,
    ]);
  });

  it('reports host.json lock renewal shorter than the function timeout', () => {
    const host = JSON.parse(readFileSync('host.json', 'utf8')) as Record<string, unknown>;
    const extensions = host.extensions as Record<string, Record<string, unknown>>;
    const bus = { ...extensions.serviceBus, maxAutoLockRenewalDuration: '00:05:00' };
    const broken = { ...host, extensions: { ...extensions, serviceBus: bus } };
    expect(hostJsonProblems(broken)).toEqual([
      'serviceBus.maxAutoLockRenewalDuration must cover functionTimeout',
    ]);
  });

  it('reports an Event Grid subscription that would loop on ccpipe\'s own pushes', () => {
    const broken = loadInfra(AKS, edit('infra/app/acr-events.bicep', ['StringNotContains', 'Xyz']));
    expect(eventGridProblems(broken, eventGridFunctions)).toEqual([
      'Event Grid lacks StringNotContains -cc/ on data.target.repository',
    ]);
  });
});

/** The app settings as environment variables, deployment-time values made plausible. */
function azureEnvironment(model: InfraModel): Record<string, string> {
  const plausible: Record<string, string> = {
    CCPIPE_KEY_VAULT_URL: 'https://kv-ccpipe-x.vault.azure.net/',
    CCPIPE_REGISTRY_ALLOWLIST: 'crccpipex.azurecr.io',
    CCPIPE_WEBHOOK_SECRET: 'resolved-by-the-platform',
    CCPIPE_STORAGE_BLOB_URL: 'https://stdatax.blob.core.windows.net/',
    CCPIPE_SERVICE_BUS_NAMESPACE: 'sb-ccpipe-x.servicebus.windows.net',
    CCPIPE_KUBE_SERVER_URL: 'https://aks-ccpipe-x.hcp.eastus2.azmk8s.io:443',
    CCPIPE_KUBE_CA_BASE64: Buffer.from('-----BEGIN CERTIFICATE-----').toString('base64'),
  };
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(appSettings(model))) {
    const known = !(value instanceof Ref) && !text(value).includes('${');
    env[name] = plausible[name] ?? (known ? text(value) : 'https://deployment-time.example');
  }
  return env;
}

/** Params of one Bicep file and whether each has a @description. */
function loadInfraFile(file: string): { name: string; described: boolean }[] {
  const model = evaluateDeployment(file, {}, reader());
  return model.ast.declarations
    .filter((d) => d.kind === 'param')
    .map((d) => ({ name: d.name, described: d.decorators.some((x) => x.name === 'description') }));
}
