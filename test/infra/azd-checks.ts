/**
 * Checks of what surrounds the Bicep: azure.yaml, infra/main.parameters.json, the hooks and
 * docs/deployment.md must name the same parameters, variables, outputs, services and Service
 * Bus entities as the Bicep; the Flex Consumption app and the Event Grid subscription must be
 * wired as ccpipe expects.
 */
import { existsSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { text, type Value } from './bicep-eval.js';
import { appSettings, at, resourcesOf, type InfraModel } from './infra-model.js';

/** Variables azd itself sets or prompts for. */
const AZD_VARIABLES = new Set(['AZURE_ENV_NAME', 'AZURE_LOCATION', 'AZURE_SUBSCRIPTION_ID']);

export interface AzdFiles {
  azureYaml: string;
  parametersJson: string;
  /** Hook scripts and docs, by path. */
  texts: Readonly<Record<string, string>>;
}

/** Bicep parameter → the azd environment variable main.parameters.json reads it from. */
export function parameterVariables(parametersJson: string): Map<string, string> {
  const { parameters } = JSON.parse(parametersJson) as {
    parameters: Record<string, { value: unknown }>;
  };
  const result = new Map<string, string>();
  for (const [name, { value }] of Object.entries(parameters)) {
    const variable = /^\$\{([A-Z0-9_]+)\}$/.exec(String(value))?.[1];
    result.set(name, variable ?? '');
  }
  return result;
}

function mainParams(model: InfraModel): string[] {
  return model.mainAst.declarations.filter((d) => d.kind === 'param').map((d) => d.name);
}

/** Every parameter is mapped to a variable; outputs never overwrite an input variable. */
export function parameterFileProblems(model: InfraModel, files: AzdFiles): string[] {
  const mapping = parameterVariables(files.parametersJson);
  const params = mainParams(model);
  const problems = params.filter((p) => !mapping.get(p))
    .map((p) => `parameter ${p} has no \${VARIABLE} in main.parameters.json`);
  for (const name of mapping.keys()) {
    if (!params.includes(name)) problems.push(`main.parameters.json sets unknown ${name}`);
  }
  for (const [output, value] of Object.entries(model.main.outputs)) {
    const param = [...mapping].find(([, variable]) => variable === output)?.[0];
    // Writing a parameter's own value back (AZURE_LOCATION) changes nothing.
    if (param && text(value) !== `\${param ${param}}`) {
      problems.push(`output ${output} would overwrite the variable of parameter ${param}`);
    }
  }
  return problems;
}

interface AzureYaml {
  infra?: { path?: string; module?: string };
  services?: Record<string, { project?: string; language?: string; host?: string }>;
  hooks?: Record<string, Record<string, { run?: string }>>;
}

/** azure.yaml: infra entry, service `api` (ts, function), hooks that exist, the app's tag. */
export function azureYamlProblems(model: InfraModel, files: AzdFiles): string[] {
  const yaml = parseYaml(files.azureYaml) as AzureYaml;
  const problems: string[] = [];
  const entry = `${yaml.infra?.path ?? 'infra'}/${yaml.infra?.module ?? 'main'}.bicep`;
  if (entry !== 'infra/main.bicep') problems.push(`azure.yaml infra entry ${entry}`);
  const api = yaml.services?.api;
  if (api?.language !== 'ts' || api.host !== 'function' || api.project !== '.') {
    problems.push('azure.yaml service api must be project ., language ts, host function');
  }
  for (const [hook, shells] of Object.entries(yaml.hooks ?? {})) {
    for (const { run } of Object.values(shells)) {
      if (!run || !existsSync(run)) problems.push(`hook ${hook} runs missing ${String(run)}`);
    }
  }
  const tags = resourcesOf(model, 'Microsoft.Web/sites')
    .map((site) => (at(site, 'tags') as Record<string, Value> | undefined)?.['azd-service-name']);
  const services = Object.keys(yaml.services ?? {});
  if (!tags.some((t) => services.includes(String(t)))) {
    problems.push('no Function App carries the tag azd-service-name of an azure.yaml service');
  }
  return problems;
}

/** Commands in docs and hooks name real variables, outputs, services and entities. */
export function commandProblems(model: InfraModel, files: AzdFiles): string[] {
  const mapped = parameterVariables(files.parametersJson).values();
  const variables = new Set([...mapped, ...AZD_VARIABLES]);
  const outputs = new Set(Object.keys(model.main.outputs));
  const services = Object.keys((parseYaml(files.azureYaml) as AzureYaml).services ?? {});
  const problems: string[] = [];
  for (const [file, content] of Object.entries(files.texts)) {
    for (const name of matches(content, /azd env set ([A-Za-z0-9_]+)/g)) {
      if (!variables.has(name)) problems.push(`${file}: azd env set ${name} sets no parameter`);
    }
    for (const name of matches(content, /azd env get-value ([A-Za-z0-9_]+)/g)) {
      if (!outputs.has(name) && !variables.has(name)) {
        problems.push(`${file}: azd env get-value ${name} is neither output nor variable`);
      }
    }
    for (const name of matches(content, /azd deploy ([a-z0-9-]+)/g)) {
      if (!services.includes(name)) problems.push(`${file}: azd deploy ${name}: no such service`);
    }
  }
  return [...problems, ...entityProblems(model, files.texts)];
}

/** `az servicebus` commands name queues, topics and subscriptions infra/ creates. */
function entityProblems(model: InfraModel, texts: Readonly<Record<string, string>>): string[] {
  const names = (type: string) =>
    new Set(resourcesOf(model, `Microsoft.ServiceBus/namespaces/${type}`).map((r) => r.body.name));
  const queues = names('queues');
  const topics = names('topics');
  const subscriptions = names('topics/subscriptions');
  const problems: string[] = [];
  for (const [file, content] of Object.entries(texts)) {
    for (const command of commands(content, 'az servicebus ')) {
      const isQueue = command.startsWith('az servicebus queue ');
      const isSubscription = command.startsWith('az servicebus topic subscription ');
      for (const name of matches(command, /--name ([a-z0-9-]+)/g)) {
        if (isQueue && !queues.has(name)) problems.push(`${file}: no queue ${name}`);
        if (isSubscription && !subscriptions.has(name)) {
          problems.push(`${file}: no subscription ${name}`);
        }
      }
      for (const name of matches(command, /--subscription-name ([a-z0-9-]+)/g)) {
        if (!subscriptions.has(name)) problems.push(`${file}: no subscription ${name}`);
      }
      for (const name of matches(command, /--topic-name ([a-z0-9-]+)/g)) {
        if (!topics.has(name)) problems.push(`${file}: no topic ${name}`);
      }
    }
  }
  return problems;
}

/** The docs' parameter table lists every parameter with its variable, and nothing else. */
export function parameterTableProblems(docs: string, parametersJson: string): string[] {
  const mapping = parameterVariables(parametersJson);
  const rows = new Map<string, string>();
  for (const match of docs.matchAll(/^\| `([A-Za-z0-9]+)` \| `([A-Z0-9_]+)` \|/gm)) {
    rows.set(match[1] as string, match[2] as string);
  }
  const problems = [...mapping].filter(([param, variable]) => rows.get(param) !== variable)
    .map(([param, variable]) => `docs: parameter table lacks ${param} / ${variable}`);
  for (const param of rows.keys()) {
    if (!mapping.has(param)) problems.push(`docs: parameter table lists unknown ${param}`);
  }
  return problems;
}

/** Flex Consumption as the brief fixes it: FC1, Node 22, 2048 MB, UAMI everywhere. */
export function flexProblems(model: InfraModel, maximumInstanceCount: Value): string[] {
  const [site] = resourcesOf(model, 'Microsoft.Web/sites');
  const [plan] = resourcesOf(model, 'Microsoft.Web/serverfarms');
  if (!site || !plan) return ['no Function App or plan'];
  const expected: [Value, Value, string][] = [
    [at(plan, 'sku.name'), 'FC1', 'plan sku'],
    [at(site, 'properties.functionAppConfig.runtime.name'), 'node', 'runtime'],
    [at(site, 'properties.functionAppConfig.runtime.version'), '22', 'runtime version'],
    [at(site, 'properties.functionAppConfig.scaleAndConcurrency.instanceMemoryMB'), 2048, 'memory'],
    [
      at(site, 'properties.functionAppConfig.scaleAndConcurrency.maximumInstanceCount'),
      maximumInstanceCount,
      'maximumInstanceCount',
    ],
    [
      at(site, 'properties.functionAppConfig.deployment.storage.authentication.type'),
      'UserAssignedIdentity',
      'deployment storage auth',
    ],
    [at(site, 'identity.type'), 'UserAssigned', 'identity type'],
  ];
  const problems = expected.filter(([actual, want]) => text(actual) !== text(want))
    .map(([actual, want, what]) => `Function App ${what} is ${text(actual)}, want ${text(want)}`);
  if (!at(site, 'properties.keyVaultReferenceIdentity')) {
    problems.push('Function App must resolve Key Vault references with the UAMI');
  }
  return problems;
}

/** ImagePushed goes to the Event Grid function, minus ccpipe's own output repositories. */
export function eventGridProblems(model: InfraModel, eventGridFunctions: string[]): string[] {
  const [subscription] = resourcesOf(model, 'Microsoft.EventGrid/systemTopics/eventSubscriptions');
  if (!subscription) return ['no Event Grid subscription'];
  const problems: string[] = [];
  const target = text(at(subscription, 'properties.destination.properties.resourceId'));
  const fn = /\/functions\/([^/]+)$/.exec(target)?.[1];
  if (at(subscription, 'properties.destination.endpointType') !== 'AzureFunction') {
    problems.push('Event Grid destination must be an AzureFunction endpoint');
  }
  if (!fn || !eventGridFunctions.includes(fn)) problems.push(`Event Grid targets ${target}`);
  const types = at(subscription, 'properties.filter.includedEventTypes');
  if (text(types) !== text(['Microsoft.ContainerRegistry.ImagePushed'])) {
    problems.push(`Event Grid must deliver ImagePushed only, not ${text(types)}`);
  }
  return [...problems, ...suffixFilterProblems(model, subscription.body)];
}

const REPOSITORY = 'data.target.repository';

function suffixFilterProblems(model: InfraModel, body: Record<string, Value>): string[] {
  const suffix = appSettings(model).CCPIPE_OUTPUT_SUFFIX;
  const filters = (((body.properties as Record<string, Value>).filter as Record<string, Value>)
    .advancedFilters ?? []) as Record<string, Value>[];
  const wanted: [string, string][] = [
    ['StringNotEndsWith', String(suffix)],
    ['StringNotContains', `${String(suffix)}/`],
  ];
  const has = (op: string, value: string) => filters.some((f) =>
    f.operatorType === op && f.key === REPOSITORY && text(f.values) === text([value]));
  return wanted.filter(([op, value]) => !has(op, value))
    .map(([op, value]) => `Event Grid lacks ${op} ${value} on data.target.repository`);
}

function matches(content: string, pattern: RegExp): string[] {
  return [...content.matchAll(pattern)].map((m) => m[1] as string);
}

/** Shell commands starting with `prefix`, with `\`-continued lines joined. */
function commands(content: string, prefix: string): string[] {
  const joined = content.replace(/\\\n\s*/g, ' ');
  return joined.split('\n').map((l) => l.trim()).filter((l) => l.startsWith(prefix));
}
