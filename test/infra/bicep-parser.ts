/**
 * A structural parser for the Bicep subset infra/ uses: `targetScope`, `param`, `var`,
 * `resource`, `module`, `output`, `import { … } from`, decorators, object and array literals,
 * `for` and `if` bodies, and expressions (calls, member access, `?:`, `??`, `&&`, `||`,
 * comparisons, `!`, lambdas). Newlines separate object and array entries, as in Bicep; an
 * expression continues on the next line only inside brackets or before `?`, `:`, `&&`, `||`,
 * `??`. Anything else is a {@link BicepSyntaxError} naming the line, so unsupported syntax fails
 * the infra tests loudly instead of being skipped.
 */
import { BicepSyntaxError, tokenize, type Token } from './bicep-lexer.js';

export type Expr =
  | { kind: 'string'; parts: (string | Expr)[] }
  | { kind: 'number'; value: number }
  | { kind: 'bool'; value: boolean }
  | { kind: 'null' }
  | { kind: 'ident'; name: string }
  | { kind: 'object'; entries: ObjectEntry[] }
  | { kind: 'array'; items: Expr[] }
  | { kind: 'member'; object: Expr; property: string; safe: boolean }
  | { kind: 'index'; object: Expr; index: Expr }
  | { kind: 'call'; callee: Expr; args: Expr[] }
  | { kind: 'unary'; op: string; operand: Expr }
  | { kind: 'binary'; op: string; left: Expr; right: Expr }
  | { kind: 'ternary'; test: Expr; then: Expr; otherwise: Expr }
  | { kind: 'lambda'; params: string[]; body: Expr }
  | { kind: 'for'; item: string; index?: string; iterable: Expr; body: Expr }
  | { kind: 'if'; test: Expr; body: Expr }
  | { kind: 'nonNull'; operand: Expr };

export interface ObjectEntry {
  key: string;
  value: Expr;
  comments: string[];
}

export interface Decorator {
  name: string;
  args: Expr[];
}

export type DeclarationKind = 'targetScope' | 'param' | 'var' | 'resource' | 'module' | 'output';

export interface Declaration {
  kind: DeclarationKind;
  name: string;
  /** Param or output type; resource `Type@apiVersion`; module path. */
  type: string;
  existing: boolean;
  value?: Expr;
  decorators: Decorator[];
  comments: string[];
  line: number;
}

export interface Import {
  names: string[];
  from: string;
}

export interface BicepFile {
  declarations: Declaration[];
  imports: Import[];
}

const BINARY: Record<string, number> = {
  '??': 2, '||': 3, '&&': 4, '==': 5, '!=': 5, '=~': 5, '!~': 5,
  '<': 6, '>': 6, '<=': 6, '>=': 6, '+': 7, '-': 7, '*': 8, '/': 8, '%': 8,
};
const CONTINUES_LINE = new Set(['?', '&&', '||', '??']);
const KEYWORDS = new Set(['targetScope', 'param', 'var', 'resource', 'module', 'output']);

/** Parses a whole Bicep file. */
export function parseBicep(source: string): BicepFile {
  return new Parser(tokenize(source)).file();
}

/** Parses one expression (also used for the `${…}` parts of strings). */
export function parseExpression(source: string): Expr {
  const parser = new Parser(tokenize(source));
  const expr = parser.expression();
  parser.end();
  return expr;
}

class Parser {
  private pos = 0;
  private ternaryDepth = 0;

  constructor(private readonly tokens: Token[]) {}

  file(): BicepFile {
    const result: BicepFile = { declarations: [], imports: [] };
    let comments: string[] = [];
    let decorators: Decorator[] = [];
    while (this.peek().kind !== 'eof') {
      const token = this.peek();
      if (token.kind === 'comment') {
        comments.push(this.take().text);
      } else if (token.kind === 'newline') {
        this.take();
        if (this.peek().kind === 'newline' && decorators.length === 0) comments = [];
      } else if (token.text === '@') {
        decorators.push(this.decorator());
      } else if (token.text === 'import') {
        result.imports.push(this.importStatement());
        comments = [];
      } else {
        result.declarations.push(this.declaration(comments, decorators));
        comments = [];
        decorators = [];
      }
    }
    return result;
  }

  end(): void {
    this.skipNewlines();
    if (this.peek().kind !== 'eof') throw this.error(`unexpected ${this.peek().text}`);
  }

  private declaration(comments: string[], decorators: Decorator[]): Declaration {
    const keyword = this.take();
    if (!KEYWORDS.has(keyword.text)) throw this.error(`unexpected ${keyword.text}`, keyword);
    const kind = keyword.text as DeclarationKind;
    const base = { kind, decorators, comments, line: keyword.line, existing: false };
    if (kind === 'targetScope') {
      this.expect('=');
      return { ...base, name: 'targetScope', type: '', value: this.expression() };
    }
    const name = this.expectKind('ident').text;
    if (kind === 'var') {
      this.expect('=');
      return { ...base, name, type: '', value: this.expression() };
    }
    if (kind === 'resource' || kind === 'module') return this.resource(base, name);
    const type = this.typeText();
    const value = this.accept('=') ? this.expression() : undefined;
    return value ? { ...base, name, type, value } : { ...base, name, type };
  }

  private resource(base: Omit<Declaration, 'name' | 'type'>, name: string): Declaration {
    const type = this.stringLiteral();
    const existing = this.peek().text === 'existing';
    if (existing) this.take();
    this.expect('=');
    return { ...base, name, type, existing, value: this.resourceBody() };
  }

  private resourceBody(): Expr {
    if (this.peek().text !== 'if') return this.expression();
    this.take();
    this.expect('(');
    const test = this.grouped(() => this.expression());
    return { kind: 'if', test, body: this.expression() };
  }

  private typeText(): string {
    let text = '';
    while (!['=', '\n', ''].includes(this.peek().text) && this.peek().kind !== 'comment') {
      text += this.take().text;
    }
    return text;
  }

  private decorator(): Decorator {
    this.expect('@');
    const name = this.expectKind('ident').text;
    this.expect('(');
    return { name, args: this.list(')', () => this.expression()) };
  }

  private importStatement(): Import {
    this.take();
    this.expect('{');
    const names = this.list('}', () => this.expectKind('ident').text);
    if (this.expectKind('ident').text !== 'from') throw this.error('expected from');
    return { names, from: this.stringLiteral() };
  }

  expression(): Expr {
    return this.binary(0);
  }

  private binary(minPrecedence: number): Expr {
    let left = this.unary();
    for (;;) {
      this.continueLine();
      const op = this.peek().text;
      if (op === '?' && minPrecedence <= 1) {
        left = this.ternary(left);
        continue;
      }
      const precedence = this.peek().kind === 'punct' ? BINARY[op] : undefined;
      if (precedence === undefined || precedence < minPrecedence) return left;
      this.take();
      this.skipNewlines();
      left = { kind: 'binary', op, left, right: this.binary(precedence + 1) };
    }
  }

  private ternary(test: Expr): Expr {
    this.take();
    this.skipNewlines();
    this.ternaryDepth++;
    const then = this.binary(1);
    this.continueLine();
    this.expect(':');
    this.ternaryDepth--;
    this.skipNewlines();
    return { kind: 'ternary', test, then, otherwise: this.binary(1) };
  }

  /** Moves past newlines when the next token can only continue the expression. */
  private continueLine(): void {
    let i = this.pos;
    while (this.tokens[i]?.kind === 'newline' || this.tokens[i]?.kind === 'comment') i++;
    const next = this.tokens[i]?.text ?? '';
    const continues = CONTINUES_LINE.has(next) || (next === ':' && this.ternaryDepth > 0);
    if (i !== this.pos && continues) this.pos = i;
  }

  private unary(): Expr {
    const op = this.peek().text;
    if (op === '!' || op === '-') {
      this.take();
      return { kind: 'unary', op, operand: this.unary() };
    }
    return this.postfix(this.primary());
  }

  private postfix(expr: Expr): Expr {
    for (;;) {
      const text = this.peek().text;
      if (text === '.' || text === '.?') {
        this.take();
        expr = { kind: 'member', object: expr, property: this.take().text, safe: text === '.?' };
      } else if (text === '[') {
        this.take();
        expr = { kind: 'index', object: expr, index: this.grouped(() => this.expression(), ']') };
      } else if (text === '(') {
        this.take();
        expr = { kind: 'call', callee: expr, args: this.list(')', () => this.expression()) };
      } else if (text === '!' && this.peek(1).text !== '=') {
        this.take();
        expr = { kind: 'nonNull', operand: expr };
      } else {
        return expr;
      }
    }
  }

  private primary(): Expr {
    const token = this.peek();
    if (token.kind === 'number') return { kind: 'number', value: Number(this.take().text) };
    if (token.kind === 'string') return this.string(this.take());
    if (token.text === '{') return this.object();
    if (token.text === '[') return this.arrayOrFor();
    if (token.text === '(') return this.parenthesized();
    if (token.kind !== 'ident') throw this.error(`unexpected ${JSON.stringify(token.text)}`);
    return this.identifier();
  }

  private identifier(): Expr {
    const name = this.take().text;
    if (this.peek().text === '=>') {
      this.take();
      return { kind: 'lambda', params: [name], body: this.expression() };
    }
    if (name === 'true' || name === 'false') return { kind: 'bool', value: name === 'true' };
    if (name === 'null') return { kind: 'null' };
    return { kind: 'ident', name };
  }

  private parenthesized(): Expr {
    const close = this.findClose(this.pos);
    if (this.tokens[close + 1]?.text === '=>') {
      this.take();
      const params = this.list(')', () => this.expectKind('ident').text);
      this.expect('=>');
      return { kind: 'lambda', params, body: this.expression() };
    }
    this.take();
    return this.grouped(() => this.expression());
  }

  private string(token: Token): Expr {
    const parts = (token.segments ?? []).map((s) =>
      'text' in s ? s.text : parseExpression(s.source),
    );
    return { kind: 'string', parts };
  }

  private object(): Expr {
    this.expect('{');
    const entries: ObjectEntry[] = [];
    let comments: string[] = [];
    for (;;) {
      const token = this.peek();
      if (token.text === '}') break;
      if (token.kind === 'newline' || token.text === ',') this.take();
      else if (token.kind === 'comment') comments.push(this.take().text);
      else {
        entries.push(this.entry(comments));
        comments = [];
      }
    }
    this.take();
    return { kind: 'object', entries };
  }

  private entry(comments: string[]): ObjectEntry {
    const token = this.take();
    const key = token.kind === 'string' ? this.keyText(token) : token.text;
    if (token.kind !== 'ident' && token.kind !== 'string') throw this.unexpected('a key', token);
    this.expect(':');
    return { key, value: this.expression(), comments };
  }

  /** A quoted key: its text, or its source when interpolated (`'${identityId}'`). */
  private keyText(token: Token): string {
    const segments = token.segments ?? [];
    const plain = segments.every((s) => 'text' in s);
    return plain ? segments.map((s) => ('text' in s ? s.text : '')).join('') : token.text;
  }

  private arrayOrFor(): Expr {
    this.expect('[');
    this.skipNewlines();
    if (this.peek().text === 'for') return this.forExpression();
    const items: Expr[] = [];
    for (;;) {
      const token = this.peek();
      if (token.text === ']') break;
      if (token.kind === 'newline' || token.kind === 'comment' || token.text === ',') this.take();
      else items.push(this.expression());
    }
    this.take();
    return { kind: 'array', items };
  }

  private forExpression(): Expr {
    this.take();
    let item: string;
    let index: string | undefined;
    if (this.accept('(')) {
      item = this.expectKind('ident').text;
      this.expect(',');
      index = this.expectKind('ident').text;
      this.expect(')');
    } else {
      item = this.expectKind('ident').text;
    }
    if (this.take().text !== 'in') throw this.error('expected in');
    const iterable = this.expression();
    this.expect(':');
    this.skipNewlines();
    const body = this.resourceBody();
    this.skipNewlines();
    this.expect(']');
    return { kind: 'for', item, iterable, body, ...(index ? { index } : {}) };
  }

  /** Items separated by commas or newlines up to `close` (already past the opening bracket). */
  private list<T>(close: string, item: () => T): T[] {
    const items: T[] = [];
    return this.grouped(() => {
      while (this.peek().text !== close) {
        if (this.peek().text === ',') this.take();
        else items.push(item());
        this.skipNewlines();
      }
      return items;
    }, close);
  }

  /** Runs `inner` with newlines insignificant, then expects `close`. */
  private grouped<T>(inner: () => T, close = ')'): T {
    this.skipNewlines();
    const saved = this.ternaryDepth;
    this.ternaryDepth = 0;
    const result = inner();
    this.ternaryDepth = saved;
    this.skipNewlines();
    this.expect(close);
    return result;
  }

  private findClose(open: number): number {
    let depth = 0;
    for (let i = open; i < this.tokens.length; i++) {
      const text = this.tokens[i]?.text;
      if (text === '(' || text === '[' || text === '{') depth++;
      if ((text === ')' || text === ']' || text === '}') && --depth === 0) return i;
    }
    throw this.error('unbalanced brackets');
  }

  private stringLiteral(): string {
    const token = this.expectKind('string');
    return (token.segments ?? []).map((s) => ('text' in s ? s.text : '')).join('');
  }

  private skipNewlines(): void {
    while (this.peek().kind === 'newline' || this.peek().kind === 'comment') this.take();
  }

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.pos + offset, this.tokens.length - 1)] as Token;
  }

  private take(): Token {
    const token = this.peek();
    if (token.kind !== 'eof') this.pos++;
    return token;
  }

  private accept(text: string): boolean {
    if (this.peek().text !== text) return false;
    this.take();
    return true;
  }

  private expect(text: string): Token {
    const token = this.take();
    if (token.text !== text) throw this.unexpected(text, token);
    return token;
  }

  private expectKind(kind: Token['kind']): Token {
    const token = this.take();
    if (token.kind !== kind) throw this.unexpected(kind, token);
    return token;
  }

  private unexpected(expected: string, token: Token): BicepSyntaxError {
    return this.error(`expected ${expected}, got ${JSON.stringify(token.text)}`, token);
  }

  private error(message: string, token: Token = this.peek()): BicepSyntaxError {
    return new BicepSyntaxError(`line ${token.line}: ${message}`);
  }
}
