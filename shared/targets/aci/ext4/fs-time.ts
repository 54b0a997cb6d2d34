/**
 * ext4 inode timestamps as hcsshim's compactext4 encodes them: one 64-bit value holding the
 * seconds in its low 34 bits and the nanoseconds above (`sec | nsec << 34`); the inode stores
 * its low 32 bits in the time field and its high 32 bits in the `*_extra` field.
 *
 * The encoding is reproduced exactly, quirks included: seconds are clamped to
 * [-2^31, 0x37fffffff] (a clamped value loses its nanoseconds, and a time before -2^31 is
 * stored as +2^31); a negative time in range is stored as its 64-bit two's complement OR'd
 * with the nanoseconds; Go's zero time is stored as 0.
 */
import { goUnixTime, type TarTime } from './tar-header.js';

const SECONDS_MASK = 0x3ffffffffn;

/** Encodes a time (undefined = Go's zero time) as the 64-bit on-disk value. */
export function toFsTime(time: TarTime | undefined): bigint {
  if (time === undefined) return 0n;
  if (time.sec < -0x80000000) return 0x80000000n;
  if (time.sec > 0x37fffffff) return 0x37fffffffn;
  return BigInt.asUintN(64, BigInt(time.sec)) | (BigInt(time.nsec) << 34n);
}

/** Decodes an on-disk value back into a time, as compactext4 does when copying attributes. */
export function fromFsTime(value: bigint): TarTime | undefined {
  if (value === 0n) return undefined;
  let sec = Number(value & SECONDS_MASK);
  if (sec > 0x7fffffff && sec < 0x100000000) sec = sec - 0x100000000;
  return goUnixTime(sec, Number(value >> 34n));
}

/** The inode's 32-bit time field. */
export function fsTimeLow(value: bigint): number {
  return Number(value & 0xffffffffn);
}

/** The inode's 32-bit `*_extra` field. */
export function fsTimeExtra(value: bigint): number {
  return Number((value >> 32n) & 0xffffffffn);
}
