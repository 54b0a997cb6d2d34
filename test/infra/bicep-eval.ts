/**
 * Evaluates a Bicep deployment as far as it can be known before Azure runs it: parameters
 * (given or their defaults), variables, loops, conditions, module calls (recursively, with the
 * values passed), and the functions infra/ uses on known values. What only Azure knows (resource
 * properties, module outputs, `uniqueString`, `tenant()`, …) becomes a {@link Ref} that records
 * which declaration it came from, so checks can still follow it ("this setting is the blob
 * endpoint of module dataStorage").
 */
import { dirname, join } from 'node:path';
import { parseBicep, type BicepFile, type Declaration, type Expr } from './bicep-parser.js';

/** A value known only at deployment time, named by its source text. */
export class Ref {
  constructor(
    readonly text: string,
    /** The resource or module symbol it reads from, and the file declaring it. */
    readonly symbol?: string,
    readonly file?: string,
    readonly path: readonly string[] = [],
  ) {}

  extend(part: string, text: string): Ref {
    return new Ref(text, this.symbol, this.file, [...this.path, part]);
  }

  toString(): string {
    return '${' + this.text + '}';
  }
}

export type Value = unknown;

/** One resource (or `existing` reference) as deployed, with its body evaluated. */
export interface ResourceInstance {
  file: string;
  symbol: string;
  type: string;
  apiVersion: string;
  existing: boolean;
  /** Loop index when declared with `for`. */
  index?: number;
  body: Record<string, Value>;
  comments: string[];
  /** The `if` condition: true when there is none, a Ref when unknown. */
  condition: Value;
}

export interface ModuleInstance {
  file: string;
  symbol: string;
  /** Path of the module's file. */
  target: string;
  params: Record<string, Value>;
  condition: Value;
  deployment: Deployment;
}

export interface Deployment {
  file: string;
  ast: BicepFile;
  params: Record<string, Value>;
  resources: ResourceInstance[];
  modules: ModuleInstance[];
  outputs: Record<string, Value>;
  /** Evaluates a variable of this file. */
  variable(name: string): Value;
}

/** Reads a file of the repository (tests swap in edited copies). */
export type Loader = (path: string) => string;

/** Evaluates `file` with `params` (others take their defaults) and every module it calls. */
export function evaluateDeployment(
  file: string,
  params: Record<string, Value>,
  load: Loader,
): Deployment {
  return new FileEvaluator(file, parseBicep(load(file)), params, load).run();
}

type Scope = ReadonlyMap<string, Value>;
type Fn = (args: Value[], text: string) => Value;

class FileEvaluator {
  private readonly decls = new Map<string, Declaration>();
  private readonly cache = new Map<string, Value>();
  private readonly imported = new Map<string, Value>();
  private readonly params: Record<string, Value> = {};

  constructor(
    private readonly file: string,
    private readonly ast: BicepFile,
    given: Record<string, Value>,
    private readonly load: Loader,
  ) {
    for (const decl of ast.declarations) this.decls.set(decl.name, decl);
    this.loadImports();
    for (const decl of ast.declarations.filter((d) => d.kind === 'param')) {
      this.params[decl.name] = decl.name in given ? given[decl.name] : this.defaultOf(decl);
    }
  }

  run(): Deployment {
    const deployment: Deployment = {
      file: this.file,
      ast: this.ast,
      params: this.params,
      resources: [],
      modules: [],
      outputs: {},
      variable: (name) => this.lookup(name, new Map()),
    };
    for (const decl of this.ast.declarations) this.declare(decl, deployment);
    return deployment;
  }

  private declare(decl: Declaration, deployment: Deployment): void {
    if (decl.kind === 'resource') deployment.resources.push(...this.resources(decl));
    if (decl.kind === 'module') deployment.modules.push(...this.modules(decl));
    if (decl.kind === 'output' && decl.value) {
      deployment.outputs[decl.name] = this.evaluate(decl.value, new Map());
    }
  }

  private loadImports(): void {
    for (const { names, from } of this.ast.imports) {
      const path = join(dirname(this.file), from);
      const other = new FileEvaluator(path, parseBicep(this.load(path)), {}, this.load).run();
      for (const name of names) this.imported.set(name, other.variable(name));
    }
  }

  private defaultOf(decl: Declaration): Value {
    return decl.value ? this.evaluate(decl.value, new Map()) : new Ref(`param ${decl.name}`);
  }

  private resources(decl: Declaration): ResourceInstance[] {
    const [type = '', apiVersion = ''] = decl.type.split('@');
    return this.instances(decl).map(({ body, condition, index }) => ({
      file: this.file,
      symbol: decl.name,
      type,
      apiVersion,
      existing: decl.existing,
      body: asObject(body),
      comments: decl.comments,
      condition,
      ...(index === undefined ? {} : { index }),
    }));
  }

  private modules(decl: Declaration): ModuleInstance[] {
    const target = join(dirname(this.file), decl.type);
    return this.instances(decl).map(({ body, condition }) => {
      const params = asObject(asObject(body).params);
      const deployment = evaluateDeployment(target, params, this.load);
      return { file: this.file, symbol: decl.name, target, params, condition, deployment };
    });
  }

  /** The bodies a resource or module declaration deploys: one, none, or one per loop item. */
  private instances(decl: Declaration): { body: Value; condition: Value; index?: number }[] {
    const expr = decl.value as Expr;
    if (expr.kind !== 'for') return this.conditional(expr, new Map());

    const items = this.evaluate(expr.iterable, new Map());
    if (!Array.isArray(items)) return this.conditional(expr.body, new Map([[expr.item, items]]));
    return items.flatMap((item, index) => {
      const scope = new Map<string, Value>([[expr.item, item]]);
      if (expr.index) scope.set(expr.index, index);
      return this.conditional(expr.body, scope).map((i) => ({ ...i, index }));
    });
  }

  private conditional(expr: Expr, scope: Scope): { body: Value; condition: Value }[] {
    if (expr.kind !== 'if') return [{ body: this.evaluate(expr, scope), condition: true }];
    const condition = this.evaluate(expr.test, scope);
    if (condition === false) return [];
    return [{ body: this.evaluate(expr.body, scope), condition }];
  }

  evaluate(expr: Expr, scope: Scope): Value {
    switch (expr.kind) {
      case 'string':
        return this.interpolate(expr.parts, scope);
      case 'number':
      case 'bool':
        return expr.value;
      case 'null':
        return null;
      case 'ident':
        return this.lookup(expr.name, scope);
      case 'object':
        return Object.fromEntries(expr.entries.map((e) => [e.key, this.evaluate(e.value, scope)]));
      case 'array':
        return expr.items.map((item) => this.evaluate(item, scope));
      case 'member':
        return member(this.evaluate(expr.object, scope), expr.property, expr.safe);
      case 'index':
        return index(this.evaluate(expr.object, scope), this.evaluate(expr.index, scope));
      case 'call':
        return this.call(expr, scope);
      case 'unary':
        return unary(expr.op, this.evaluate(expr.operand, scope));
      case 'binary':
        return this.binary(expr, scope);
      case 'ternary':
        return this.ternary(expr, scope);
      case 'lambda':
        return (...args: Value[]) => this.evaluate(expr.body, bind(scope, expr.params, args));
      case 'nonNull':
        return this.evaluate(expr.operand, scope);
      default:
        throw new Error(`${this.file}: cannot evaluate a ${expr.kind} expression here`);
    }
  }

  private lookup(name: string, scope: Scope): Value {
    if (scope.has(name)) return scope.get(name);
    if (name in this.params) return this.params[name];
    if (this.imported.has(name)) return this.imported.get(name);
    const decl = this.decls.get(name);
    if (decl?.kind === 'var') return this.variable(decl);
    if (decl?.kind === 'resource' || decl?.kind === 'module') return new Ref(name, name, this.file);
    return new Ref(name);
  }

  private variable(decl: Declaration): Value {
    if (!this.cache.has(decl.name)) {
      this.cache.set(decl.name, this.evaluate(decl.value as Expr, new Map()));
    }
    return this.cache.get(decl.name);
  }

  private interpolate(parts: (string | Expr)[], scope: Scope): string {
    return parts.map((p) => (typeof p === 'string' ? p : text(this.evaluate(p, scope)))).join('');
  }

  private call(expr: Extract<Expr, { kind: 'call' }>, scope: Scope): Value {
    const args = expr.args.map((a) => this.evaluate(a, scope));
    const name = expr.callee.kind === 'ident' ? expr.callee.name : undefined;
    const source = `${name ?? describe(expr.callee)}(${args.map(text).join(', ')})`;
    const fn = name ? FUNCTIONS[name] : undefined;
    if (!fn) return callOnValue(this.evaluate(expr.callee, scope), source);
    return args.some((a) => a instanceof Ref) && !TOLERANT.has(name ?? '')
      ? new Ref(source)
      : fn(args, source);
  }

  private binary(expr: Extract<Expr, { kind: 'binary' }>, scope: Scope): Value {
    const left = this.evaluate(expr.left, scope);
    if (expr.op === '&&' && left === false) return false;
    if (expr.op === '||' && left === true) return true;
    if (expr.op === '??' && left !== null && left !== undefined && !(left instanceof Ref)) {
      return left;
    }
    const right = this.evaluate(expr.right, scope);
    if (left instanceof Ref || right instanceof Ref) {
      return new Ref(`${text(left)} ${expr.op} ${text(right)}`);
    }
    return binary(expr.op, left, right);
  }

  private ternary(expr: Extract<Expr, { kind: 'ternary' }>, scope: Scope): Value {
    const test = this.evaluate(expr.test, scope);
    if (test === true) return this.evaluate(expr.then, scope);
    if (test === false) return this.evaluate(expr.otherwise, scope);
    const then = text(this.evaluate(expr.then, scope));
    const otherwise = text(this.evaluate(expr.otherwise, scope));
    return new Ref(`${text(test)} ? ${then} : ${otherwise}`);
  }
}

/** Functions that handle unknown arguments themselves. */
const TOLERANT = new Set(['concat', 'union', 'subscriptionResourceId', 'string', 'empty']);

const FUNCTIONS: Record<string, Fn> = {
  concat: (args) => (args.every(Array.isArray) ? args.flat() : args.map(text).join('')),
  union: (args) => union(args),
  split: ([s, sep]) => String(s).split(String(sep)),
  trim: ([s]) => String(s).trim(),
  toLower: ([s]) => String(s).toLowerCase(),
  toUpper: ([s]) => String(s).toUpperCase(),
  empty: ([v]) => (v instanceof Ref ? v : isEmpty(v)),
  length: ([v]) =>
    typeof v === 'string' || Array.isArray(v) ? v.length : Object.keys(v ?? {}).length,
  last: ([v]) => (Array.isArray(v) ? v[v.length - 1] : String(v).slice(-1)),
  first: ([v]) => (Array.isArray(v) ? v[0] : String(v).slice(0, 1)),
  contains: ([c, v]) => (Array.isArray(c) ? c.includes(v) : String(c).includes(String(v))),
  replace: ([s, a, b]) => String(s).split(String(a)).join(String(b)),
  filter: ([a, f]) => (a as Value[]).filter((v) => (f as (v: Value) => Value)(v) === true),
  map: ([a, f]) => (a as Value[]).map((v) => (f as (v: Value) => Value)(v)),
  string: ([v], source) => (v instanceof Ref ? new Ref(source) : armString(v)),
  subscriptionResourceId: (args) =>
    `/subscriptions/\${subscription().subscriptionId}/providers/${args.map(text).join('/')}`,
};

function callOnValue(callee: Value, source: string): Value {
  if (callee instanceof Ref) return callee.extend('()', source);
  return new Ref(source);
}

function member(object: Value, property: string, safe: boolean): Value {
  if (object instanceof Ref) return object.extend(property, `${object.text}.${property}`);
  if (object === null || object === undefined) {
    if (safe) return null;
    throw new Error(`cannot read .${property} of ${String(object)}`);
  }
  return (object as Record<string, Value>)[property];
}

function index(object: Value, key: Value): Value {
  if (object instanceof Ref || key instanceof Ref) {
    const base = object instanceof Ref ? object : new Ref(text(object));
    return base.extend(String(key), `${base.text}[${text(key)}]`);
  }
  return (object as Record<string, Value>)[String(key)];
}

function unary(op: string, value: Value): Value {
  if (value instanceof Ref) return new Ref(`${op}${value.text}`);
  return op === '!' ? !value : -(value as number);
}

function binary(op: string, left: Value, right: Value): Value {
  switch (op) {
    case '==': return left === right;
    case '!=': return left !== right;
    case '&&': return left === true && right === true;
    case '||': return left === true || right === true;
    case '??': return left ?? right;
    case '<': return (left as number) < (right as number);
    case '>': return (left as number) > (right as number);
    case '<=': return (left as number) <= (right as number);
    case '>=': return (left as number) >= (right as number);
    case '+': return (left as number) + (right as number);
    case '-': return (left as number) - (right as number);
    case '*': return (left as number) * (right as number);
    default: throw new Error(`operator ${op} is not supported by the evaluator`);
  }
}

function union(args: Value[]): Value {
  if (args.every(Array.isArray)) return [...new Set(args.flat())];
  if (args.some((a) => a instanceof Ref)) return new Ref(`union(${args.map(text).join(', ')})`);
  return Object.assign({}, ...(args as object[]));
}

function isEmpty(value: Value): boolean {
  if (value === null || value === undefined || value === '') return true;
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === 'object' && Object.keys(value as object).length === 0;
}

/** ARM's string(): booleans print as True/False. */
function armString(value: Value): string {
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function bind(scope: Scope, names: string[], values: Value[]): Scope {
  const inner = new Map(scope);
  names.forEach((name, i) => inner.set(name, values[i]));
  return inner;
}

function asObject(value: Value): Record<string, Value> {
  return value !== null && typeof value === 'object' && !(value instanceof Ref)
    ? (value as Record<string, Value>)
    : {};
}

function describe(expr: Expr): string {
  if (expr.kind === 'ident') return expr.name;
  if (expr.kind === 'member') return `${describe(expr.object)}.${expr.property}`;
  return expr.kind;
}

/** A value as text: strings as they are, Refs as `${…}`, the rest as JSON. */
export function text(value: Value): string {
  if (typeof value === 'string') return value;
  if (value instanceof Ref) return value.toString();
  return JSON.stringify(value) ?? String(value);
}
