/** The application names operator commands accept. */
import { CcpipeError } from '../shared/errors.js';
import { isOutputRepository } from '../shared/ingest/registry-event.js';
import { ImageReference } from '../shared/oci/reference.js';

/**
 * An application is `<registry>/<repository>` exactly as runs name it (lower case, no scheme,
 * tag or digest): a config stored under any other name would never be found by a run.
 */
export function checkApplication(application: string, outputSuffix: string): void {
  let ref: ImageReference | undefined;
  try {
    ref = ImageReference.parse(application);
  } catch {
    ref = undefined;
  }

  const canonical = ref && !ref.tag && !ref.digest && `${ref.registry}/${ref.repository}`;
  if (ref === undefined || canonical !== application) {
    throw new CcpipeError('INVALID_INPUT', `application ${JSON.stringify(application)} is not ` +
      '<registry>/<repository> as runs name it (e.g. 127.0.0.1:5000/team/app, lower case, ' +
      'no scheme, tag or digest)');
  }
  if (isOutputRepository(ref.repository, outputSuffix)) {
    throw new CcpipeError('INVALID_INPUT', `application ${application} is ccpipe's output ` +
      `repository (suffix ${outputSuffix}); name the repository you push to`);
  }
}
