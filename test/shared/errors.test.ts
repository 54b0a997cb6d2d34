/**
 * describeError: one line with the error and its causes, each said once.
 */
import { describe, expect, it } from 'vitest';
import { CcpipeError, describeError } from '../../shared/errors.js';

describe('describeError', () => {
  it('follows the cause chain with its codes', () => {
    const root = new Error('connection reset');
    const mid = new CcpipeError('UPSTREAM', 'blob sha256:ab fetch failed', { cause: root });
    const top = new CcpipeError('INVALID_INPUT', 'layer 2 unreadable', { cause: mid });
    expect(describeError(top)).toBe('INVALID_INPUT: layer 2 unreadable <- caused by: ' +
      'UPSTREAM: blob sha256:ab fetch failed <- caused by: connection reset');
  });

  it('leaves out a cause whose message the error already quotes', () => {
    const cause = new Error('tar truncated after 3 entries');
    const err = new CcpipeError('INVALID_INPUT', `layer sha256:cd: ${cause.message}`, { cause });
    expect(describeError(err)).toBe(
      'INVALID_INPUT: layer sha256:cd: tar truncated after 3 entries',
    );
  });

  it('escapes control characters quoted from untrusted input', () => {
    const err = new CcpipeError('INVALID_INPUT', 'layer x: \x1b]0;owned\x07\x1b[2J/..: bad\nname');
    expect(describeError(err)).toBe(
      'INVALID_INPUT: layer x: \\x1b]0;owned\\x07\\x1b[2J/..: bad\\x0aname',
    );
  });

  it('describes thrown non-errors', () => {
    expect(describeError('plain text')).toBe('plain text');
  });
});
