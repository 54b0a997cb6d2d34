import { describe, expect, it } from 'vitest';
import {
  isAllowedRegistry,
  normalizeRegistryHost,
  parseAllowlist,
} from '../../shared/ingest/index.js';
import { expectInvalid } from './helpers.js';

describe('parseAllowlist', () => {
  it('normalises the entries', () => {
    const text = ' MyReg.AzureCR.io , 127.0.0.1:5000,[0:0::1]:5000, [FE80::A] ,localhost';

    expect(parseAllowlist(text)).toEqual([
      'myreg.azurecr.io',
      '127.0.0.1:5000',
      '[::1]:5000',
      '[fe80::a]',
      'localhost',
    ]);
  });

  it('drops duplicates after normalisation', () => {
    expect(parseAllowlist('a.io:5000,A.IO:5000')).toEqual(['a.io:5000']);
  });

  it('reads an empty text as an empty list', () => {
    expect(parseAllowlist('')).toEqual([]);
    expect(parseAllowlist('  ')).toEqual([]);
  });

  it('returns a frozen list', () => {
    expect(Object.isFrozen(parseAllowlist('a.io'))).toBe(true);
  });

  it.each([
    ['https://a.io', 'a scheme'],
    ['a.io/team', 'a path'],
    ['user@a.io', 'userinfo'],
    ['user:pw@a.io:443', 'userinfo with a password'],
    ['a .io', 'inner whitespace'],
    ['a.io\t:5000', 'a tab'],
    ['a.io:', 'an empty port'],
    [':5000', 'an empty host'],
    ['a.io:0', 'port 0'],
    ['a.io:65536', 'a port over 65535'],
    ['a.io:05000', 'a port with a leading zero'],
    ['a.io:50x0', 'a port that is not a number'],
    ['a.io:1:2', 'two ports'],
    ['::1', 'a bare IPv6 literal'],
    ['[::1', 'an unclosed bracket'],
    ['[::g]', 'an invalid IPv6 literal'],
    ['[fe80::1%eth0]:5000', 'an IPv6 zone'],
    ['[::1]5000', 'junk after the bracket'],
    ['[127.0.0.1]', 'IPv4 in brackets'],
    ['a..io', 'an empty label'],
    ['-a.io', 'a label starting with a hyphen'],
    ['a_b.io', 'an underscore'],
    ['a.io.', 'a trailing dot'],
    ['999.1.1.1', 'an IPv4 address out of range'],
    ['127.1', 'a short IPv4 address'],
    ['*.azurecr.io', 'a wildcard'],
    ['rég.example', 'a non-ASCII name'],
    [`${'a'.repeat(64)}.io`, 'a label over 63 characters'],
  ])('refuses %j (%s)', (entry) => {
    expectInvalid(() => parseAllowlist(`ok.io, ${entry}`), 'allowlist[1]');
  });

  it.each([
    ['a.io,,b.io', 'allowlist[1]'],
    ['a.io,', 'allowlist[1]'],
    [',a.io', 'allowlist[0]'],
  ])('refuses the empty entry in %j', (text, field) => {
    const error = expectInvalid(() => parseAllowlist(text), field);

    expect(error.message).toContain('is empty');
  });
});

describe('isAllowedRegistry', () => {
  const allowlist = parseAllowlist('myreg.azurecr.io,127.0.0.1:5000,[::1]:5000,localhost');

  it.each([
    ['myreg.azurecr.io', true],
    ['MyReg.AzureCR.IO', true],
    ['127.0.0.1:5000', true],
    ['[0:0:0:0:0:0:0:1]:5000', true],
    ['localhost', true],
    ['127.0.0.1', false],
    ['127.0.0.1:5001', false],
    ['myreg.azurecr.io:443', false],
    ['localhost:5000', false],
    ['[::1]', false],
    ['[::2]:5000', false],
    ['other.azurecr.io', false],
    ['myreg.azurecr.io.evil.example', false],
    ['evil.example/myreg.azurecr.io', false],
    ['user@myreg.azurecr.io', false],
    [' myreg.azurecr.io', false],
    ['', false],
  ])('%j → %s', (registry, expected) => {
    expect(isAllowedRegistry(allowlist, registry)).toBe(expected);
  });

  it('allows nothing with an empty list', () => {
    expect(isAllowedRegistry(parseAllowlist(''), '127.0.0.1:5000')).toBe(false);
  });

  it('normalises entries of a list that did not come from parseAllowlist', () => {
    const raw = ['LocalHost:5000', '[0::1]:5000', 'bad entry'];

    expect(isAllowedRegistry(raw, 'localhost:5000')).toBe(true);
    expect(isAllowedRegistry(raw, '[::1]:5000')).toBe(true);
    expect(isAllowedRegistry(raw, 'bad entry')).toBe(false);
  });
});

describe('normalizeRegistryHost', () => {
  it('lower-cases and compresses', () => {
    expect(normalizeRegistryHost('Registry.Example:8443')).toBe('registry.example:8443');
    expect(normalizeRegistryHost('[2001:DB8:0:0:0:0:0:1]:443')).toBe('[2001:db8::1]:443');
  });

  it('names the field and the value when it refuses', () => {
    const run = () => normalizeRegistryHost('a.io/x', 'source.registry');
    const error = expectInvalid(run, 'source.registry');

    expect(error.message).toContain('"a.io/x"');
  });
});
