/**
 * The secure key release (SKR) sidecar of a confidential ACI pod: its container name and the
 * environment it runs with. The policy (policy.ts) pins this environment as literal rules and
 * the render (render.ts) writes the same values into the pod spec, so both read them here.
 *
 * The sidecar serves the SKR HTTP API on `Port` inside the pod; the application asks it to
 * release its key with `SkrClientKID`, `SkrClientMAAEndpoint` and `SkrClientAKVEndpoint`.
 */

/** Name of the sidecar container, in the policy and in the pod. */
export const SKR_CONTAINER_NAME = 'skr';

/** Port the sidecar's HTTP API listens on inside the pod. */
export const SKR_PORT = '8080';

/**
 * `SkrSideCarArgs`: base64 JSON pointing the sidecar's certificate cache at the virtual node's
 * local THIM endpoint. Only written into the pod spec; ccpipe never contacts that address.
 */
export const SKR_SIDECAR_ARGS = Buffer.from(
  JSON.stringify({
    certcache: {
      endpoint_type: 'LocalTHIM',
      endpoint: '169.254.169.254/metadata/THIM/amd/certification',
    },
  }),
  'utf8',
).toString('base64');

/** The sidecar's environment, in pod order: the policy pins each as a literal rule. */
export function skrSidecarEnv(): Array<{ name: string; value: string }> {
  return [
    { name: 'SkrSideCarArgs', value: SKR_SIDECAR_ARGS },
    { name: 'Port', value: SKR_PORT },
  ];
}

/**
 * `SkrClientAKVEndpoint` for a key id: the host of a Key Vault / Managed HSM key URL
 * (`https://v.vault.azure.net/keys/k/1` → `v.vault.azure.net`), or undefined for a key that is
 * not in a vault (`local:` keys of the local stack).
 */
export function akvEndpointOf(keyId: string): string | undefined {
  if (!/^https:\/\//i.test(keyId)) return undefined;
  try {
    return new URL(keyId).host.toLowerCase() || undefined;
  } catch {
    return undefined;
  }
}
