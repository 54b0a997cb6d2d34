/**
 * infra/ as the checks see it: main.bicep evaluated with chosen parameters, every module
 * followed, the resources flattened, plus the azd files beside it. `edits` rewrite files before
 * parsing, so tests can break the Bicep on purpose and see a check fail.
 */
import { readFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import {
  evaluateDeployment,
  Ref,
  type Deployment,
  type ModuleInstance,
  type ResourceInstance,
  type Value,
} from './bicep-eval.js';
import { parseBicep, type BicepFile } from './bicep-parser.js';

export const MAIN = 'infra/main.bicep';

/** Replaces a file's text before it is read: path (from the repository root) → edit. */
export type Edits = Readonly<Record<string, (text: string) => string>>;

export interface InfraModel {
  main: Deployment;
  mainAst: BicepFile;
  resources: ResourceInstance[];
  modules: ModuleInstance[];
  read: (path: string) => string;
}

/** Evaluates infra/main.bicep with `params` (the rest take their defaults). */
export function loadInfra(params: Record<string, Value> = {}, edits: Edits = {}): InfraModel {
  const read = reader(edits);
  const main = evaluateDeployment(MAIN, params, read);
  const { resources, modules } = flatten(main);
  return { main, mainAst: parseBicep(read(MAIN)), resources, modules, read };
}

/** Reads repository files relative to the root, applying `edits`. */
export function reader(edits: Edits = {}): (path: string) => string {
  return (path) => {
    const key = relative(resolve('.'), resolve(path));
    const text = readFileSync(resolve(key), 'utf8');
    const edit = edits[key];
    return edit ? edit(text) : text;
  };
}

function flatten(deployment: Deployment): Pick<InfraModel, 'resources' | 'modules'> {
  const resources = [...deployment.resources];
  const modules = [...deployment.modules];
  for (const module of deployment.modules) {
    const inner = flatten(module.deployment);
    resources.push(...inner.resources);
    modules.push(...inner.modules);
  }
  return { resources, modules };
}

/** Resources of `type` (not `existing` references unless asked). */
export function resourcesOf(
  model: InfraModel,
  type: string,
  existing = false,
): ResourceInstance[] {
  return model.resources.filter((r) => r.type === type && (existing || !r.existing));
}

/** The Function App's app settings (the `appsettings` config resource). */
export function appSettings(model: InfraModel): Record<string, Value> {
  const configs = resourcesOf(model, 'Microsoft.Web/sites/config')
    .filter((r) => r.body.name === 'appsettings');
  if (configs.length !== 1) throw new Error(`expected one appsettings, found ${configs.length}`);
  return (configs[0] as ResourceInstance).body.properties as Record<string, Value>;
}

/** The declaration a Ref reads from: its type (`Type` of a resource, module path) and file. */
export function declarationOf(model: InfraModel, ref: Value): ResourceInstance | undefined {
  if (!(ref instanceof Ref) || ref.symbol === undefined) return undefined;
  return model.resources.find((r) => r.file === ref.file && r.symbol === ref.symbol);
}

/** The module call a Ref reads an output of. */
export function moduleOf(model: InfraModel, ref: Value): ModuleInstance | undefined {
  if (!(ref instanceof Ref) || ref.symbol === undefined) return undefined;
  return model.modules.find((m) => m.file === ref.file && m.symbol === ref.symbol);
}

/** A property path of a resource body, e.g. `properties.disableLocalAuth`. */
export function at(resource: ResourceInstance, path: string): Value {
  let value: Value = resource.body;
  for (const key of path.split('.')) {
    if (value === null || typeof value !== 'object' || value instanceof Ref) return undefined;
    value = (value as Record<string, Value>)[key];
  }
  return value;
}
