/**
 * Tokens of the Bicep subset infra/ uses (there is no Bicep CLI offline). Strings keep their
 * `${…}` interpolations as source text, parsed later by the parser; comments are tokens (the
 * parser attaches them to declarations); `#disable-next-line` pragmas are dropped.
 */

export type TokenKind = 'ident' | 'string' | 'number' | 'punct' | 'newline' | 'comment' | 'eof';

/** A piece of a string literal: literal text, or the source of an interpolated expression. */
export type StringSegment = { text: string } | { source: string };

export interface Token {
  kind: TokenKind;
  text: string;
  line: number;
  segments?: StringSegment[];
}

const PUNCT = ['==', '!=', '<=', '>=', '&&', '||', '??', '=>', '.?', '=~', '!~'];
const SINGLE = '{}[]():,.?!=<>+-*/%@|';
const ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t', '\\': '\\', "'": "'", $: '$' };

export class BicepSyntaxError extends Error {}

/** Splits Bicep source into tokens; throws {@link BicepSyntaxError} on what it cannot read. */
export function tokenize(source: string): Token[] {
  const lexer = new Lexer(source);
  const tokens: Token[] = [];
  for (let token = lexer.next(); token.kind !== 'eof'; token = lexer.next()) tokens.push(token);
  tokens.push({ kind: 'eof', text: '', line: lexer.line });
  return tokens;
}

class Lexer {
  pos = 0;
  line = 1;

  constructor(private readonly src: string) {}

  next(): Token {
    this.skipBlanks();
    if (this.pos >= this.src.length) return this.token('eof', '');
    const c = this.src[this.pos] as string;
    if (c === '\n') return this.newline();
    if (this.src.startsWith('//', this.pos)) return this.lineComment();
    if (this.src.startsWith('/*', this.pos)) return this.blockComment();
    if (c === '#') return this.pragma();
    if (this.src.startsWith("'''", this.pos)) return this.multilineString();
    if (c === "'") return this.string();
    if (/[0-9]/.test(c)) return this.match(/[0-9]+(\.[0-9]+)?/y, 'number');
    if (/[A-Za-z_$]/.test(c)) return this.match(/[A-Za-z_$][A-Za-z0-9_$]*/y, 'ident');
    return this.punct(c);
  }

  private token(kind: TokenKind, text: string, segments?: StringSegment[]): Token {
    return segments ? { kind, text, line: this.line, segments } : { kind, text, line: this.line };
  }

  private skipBlanks(): void {
    while (this.pos < this.src.length && /[ \t\r]/.test(this.src[this.pos] as string)) this.pos++;
  }

  private newline(): Token {
    const token = this.token('newline', '\n');
    this.pos++;
    this.line++;
    return token;
  }

  private lineComment(): Token {
    const end = this.lineEnd();
    const text = this.src.slice(this.pos + 2, end).trim();
    this.pos = end;
    return this.token('comment', text);
  }

  private blockComment(): Token {
    const end = this.src.indexOf('*/', this.pos + 2);
    if (end < 0) throw this.error('unterminated /* comment');
    const text = this.src.slice(this.pos + 2, end);
    this.line += text.split('\n').length - 1;
    this.pos = end + 2;
    return this.next();
  }

  /** `#disable-next-line …` and the like: not code, not documentation. */
  private pragma(): Token {
    this.pos = this.lineEnd();
    return this.next();
  }

  private lineEnd(): number {
    const end = this.src.indexOf('\n', this.pos);
    return end < 0 ? this.src.length : end;
  }

  private match(pattern: RegExp, kind: TokenKind): Token {
    pattern.lastIndex = this.pos;
    const found = pattern.exec(this.src);
    if (!found) throw this.error(`unexpected character ${this.src[this.pos]}`);
    this.pos += found[0].length;
    return this.token(kind, found[0]);
  }

  private punct(c: string): Token {
    const two = this.src.slice(this.pos, this.pos + 2);
    const text = PUNCT.includes(two) ? two : SINGLE.includes(c) ? c : undefined;
    if (text === undefined) throw this.error(`unexpected character ${c}`);
    this.pos += text.length;
    return this.token('punct', text);
  }

  private multilineString(): Token {
    const end = this.src.indexOf("'''", this.pos + 3);
    if (end < 0) throw this.error("unterminated ''' string");
    const text = this.src.slice(this.pos + 3, end);
    this.line += text.split('\n').length - 1;
    this.pos = end + 3;
    return this.token('string', text, [{ text }]);
  }

  private string(): Token {
    const start = this.pos;
    const segments: StringSegment[] = [];
    let text = '';
    this.pos++;
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined || c === '\n') throw this.error('unterminated string');
      if (c === "'") break;
      if (c === '\\') {
        text += this.escape();
      } else if (this.src.startsWith('${', this.pos)) {
        if (text) segments.push({ text });
        text = '';
        segments.push({ source: this.interpolation() });
      } else {
        text += c;
        this.pos++;
      }
    }
    if (text || segments.length === 0) segments.push({ text });
    this.pos++;
    return this.token('string', this.src.slice(start, this.pos), segments);
  }

  private escape(): string {
    const c = this.src[this.pos + 1] ?? '';
    const value = ESCAPES[c];
    if (value === undefined) throw this.error(`unknown escape \\${c}`);
    this.pos += 2;
    return value;
  }

  /** The source between `${` and its `}`, skipping nested braces and strings. */
  private interpolation(): string {
    const start = this.pos + 2;
    let depth = 0;
    for (let i = start; i < this.src.length; i++) {
      const c = this.src[i];
      if (c === "'") i = this.skipQuoted(i);
      else if (c === '{') depth++;
      else if (c === '}' && depth-- === 0) {
        this.pos = i + 1;
        return this.src.slice(start, i);
      }
    }
    throw this.error('unterminated ${ in string');
  }

  private skipQuoted(open: number): number {
    for (let i = open + 1; i < this.src.length; i++) {
      if (this.src[i] === '\\') i++;
      else if (this.src[i] === "'") return i;
    }
    throw this.error('unterminated string in interpolation');
  }

  private error(message: string): BicepSyntaxError {
    return new BicepSyntaxError(`line ${this.line}: ${message}`);
  }
}
