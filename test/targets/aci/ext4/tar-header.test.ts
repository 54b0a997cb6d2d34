/**
 * Tar header details that must behave as Go's archive/tar (the reference converter's reader)
 * and the timestamp encoding of compactext4. Expected values are worked out by hand.
 */
import { describe, expect, it } from 'vitest';
import {
  parseHeaderBlock,
  parseNumeric,
  parsePaxRecords,
  parsePaxTime,
} from '../../../../shared/targets/aci/ext4/tar-header.js';
import {
  fromFsTime,
  fsTimeExtra,
  fsTimeLow,
  toFsTime,
} from '../../../../shared/targets/aci/ext4/fs-time.js';
import { entryBlocks } from './tar-builder.js';

describe('tar numbers', () => {
  it('reads octal with spaces and NULs around it', () => {
    expect(parseNumeric(Buffer.from(' 0000644\0'))).toBe(420n);
    expect(parseNumeric(Buffer.from('\0\0\0\0'))).toBe(0n);
  });

  it('reads base-256, positive and negative', () => {
    const positive = Buffer.alloc(12);
    positive[0] = 0x80;
    positive[10] = 0x01;
    expect(parseNumeric(positive)).toBe(256n);
    expect(parseNumeric(Buffer.alloc(12, 0xff))).toBe(-1n);
  });

  it('refuses octal with garbage in it', () => {
    expect(() => parseNumeric(Buffer.from('12 34\0'))).toThrow(/octal/);
  });
});

describe('PAX records and times', () => {
  it('keeps nanoseconds, truncates beyond nine digits, borrows for negative times', () => {
    expect(parsePaxTime('1700000000.123456789')).toEqual({ sec: 1700000000, nsec: 123456789 });
    expect(parsePaxTime('1.1234567899')).toEqual({ sec: 1, nsec: 123456789 });
    expect(parsePaxTime('-100.25')).toEqual({ sec: -101, nsec: 750000000 });
  });

  it('splits records by their length prefix and refuses a wrong one', () => {
    const records = parsePaxRecords(Buffer.from('10 path=a\n17 uid=100000000\n'));
    expect([...records]).toEqual([
      ['path', 'a'],
      ['uid', '100000000'],
    ]);
    expect(() => parsePaxRecords(Buffer.from('12 path=a\n'))).toThrow();
  });
});

describe('header formats', () => {
  it('joins the USTAR prefix and accepts a signed checksum', () => {
    const [block] = entryBlocks({ name: 'file', data: Buffer.from('x') });
    const header = Buffer.from(block as Buffer);
    header.write('some/prefix', 345, 'latin1');
    header[300] = 0xe9; // a byte ≥ 0x80 makes the signed and unsigned sums differ
    let signed = 0;
    for (let i = 0; i < 512; i++) {
      const byte = i >= 148 && i < 156 ? 0x20 : (header[i] as number);
      signed += byte >= 0x80 ? byte - 256 : byte;
    }
    header.write(signed.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    expect(parseHeaderBlock(header).name).toBe('some/prefix/file');
  });

  it('reads GNU access and change times', () => {
    const [block] = entryBlocks({ name: 'f', data: Buffer.from('x') });
    const header = Buffer.from(block as Buffer);
    header.write('ustar  \0', 257, 'latin1');
    header.write('00000000144\0', 345, 'latin1');
    header.write('00000000310\0', 357, 'latin1');
    header.write(' '.repeat(8), 148, 'latin1');
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');

    const parsed = parseHeaderBlock(header);
    expect(parsed.atime).toEqual({ sec: 100, nsec: 0 });
    expect(parsed.ctime).toEqual({ sec: 200, nsec: 0 });
  });
});

describe('ext4 timestamps', () => {
  it('stores seconds low and nanoseconds × 4 in the extra field', () => {
    const value = toFsTime({ sec: 1700000000, nsec: 123456789 });
    expect([fsTimeLow(value), fsTimeExtra(value)]).toEqual([1700000000, 123456789 * 4]);
    expect(fromFsTime(value)).toEqual({ sec: 1700000000, nsec: 123456789 });
  });

  it('reproduces compactext4 for negative, huge and zero times', () => {
    const negative = toFsTime({ sec: -101, nsec: 750000000 });
    expect([fsTimeLow(negative), fsTimeExtra(negative)]).toEqual([2 ** 32 - 101, 0xffffffff]);
    const huge = toFsTime({ sec: 20000000000, nsec: 5 });
    expect([fsTimeLow(huge), fsTimeExtra(huge)]).toEqual([0x7fffffff, 3]);
    const ancient = toFsTime({ sec: -3e9, nsec: 0 });
    expect([fsTimeLow(ancient), fsTimeExtra(ancient)]).toEqual([0x80000000, 0]);
    expect(toFsTime(undefined)).toBe(0n);
  });
});
