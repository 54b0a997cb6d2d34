/**
 * `KubeConfig`s for the Kubernetes cluster adapter, built only from what ccpipe is given: a
 * kubeconfig file (local development) or an API server URL, its CA and a bearer token
 * function (AKS with Entra ID tokens). Nothing here ever falls back to the default kubeconfig
 * (`$KUBECONFIG`, `~/.kube/config`) or the in-cluster service account: ccpipe talks only to the
 * cluster it was configured for.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { CcpipeError } from '../../errors.js';

/** Returns a bearer token for the API server; called for every request and watch. */
export type TokenProvider = () => Promise<string>;

/** Name of the kubeconfig `auth-provider` served by {@link kubeConfigForBearerToken}. */
export const TOKEN_AUTH_PROVIDER = 'ccpipe-token-provider';

const NAME = 'ccpipe';

type Authenticator = Parameters<KubeConfig['addAuthenticator']>[0];

/** Where the cluster is and how to authenticate to it with a bearer token. */
export interface BearerTokenClusterOptions {
  /** API server URL; must be `https://`. */
  server: string;
  /** PEM bundle of the CA that signed the API server's certificate. */
  caPem: string;
  /**
   * Returns the bearer token, e.g. an Entra ID token for the AKS server application
   * (`6dae42f8-4368-4678-94ff-3960e28e3630/.default`). It is called for every request, so it
   * should cache the token until shortly before it expires (`@azure/identity` credentials do).
   */
  token: TokenProvider;
  /** Name expected in the server's certificate when it differs from the URL's host. */
  tlsServerName?: string;
}

/**
 * A `KubeConfig` for an API server reached with a bearer token from `options.token`. The token
 * is asked for on each request (API calls and watches alike) and never stored in the config.
 */
export function kubeConfigForBearerToken(options: BearerTokenClusterOptions): KubeConfig {
  checkServer(options.server);
  if (!options.caPem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new CcpipeError('INVALID_INPUT', `CA of ${options.server} is not a PEM certificate`);
  }

  const config = new KubeConfig();
  config.addAuthenticator(tokenAuthenticator(options.token, options.server));
  config.loadFromOptions({
    clusters: [
      {
        name: NAME,
        server: options.server,
        caData: Buffer.from(options.caPem, 'utf8').toString('base64'),
        skipTLSVerify: false,
        tlsServerName: options.tlsServerName,
      },
    ],
    users: [{ name: NAME, authProvider: { name: TOKEN_AUTH_PROVIDER, config: {} } }],
    contexts: [{ name: NAME, cluster: NAME, user: NAME }],
    currentContext: NAME,
  });
  return config;
}

/**
 * A `KubeConfig` read from one kubeconfig file (its current context, or `context`). Relative
 * certificate paths resolve against the file's folder, as kubectl does.
 */
export function kubeConfigFromFile(path: string, context?: string): KubeConfig {
  const config = new KubeConfig();
  try {
    config.loadFromFile(path);
  } catch (err) {
    throw new CcpipeError('INVALID_INPUT', `kubeconfig ${path} cannot be read`, { cause: err });
  }

  if (context !== undefined) config.setCurrentContext(context);
  if (!config.getCurrentCluster()) {
    const which = context ?? config.getCurrentContext() ?? '(none)';
    throw new CcpipeError('INVALID_INPUT', `kubeconfig ${path}: context ${which} has no cluster`);
  }
  return config;
}

/** The API server URL of a config (what `ApplyResult.location` names). */
export function serverOf(config: KubeConfig): string {
  const cluster = config.getCurrentCluster();
  if (!cluster) throw new CcpipeError('INVALID_INPUT', 'kubeconfig has no current cluster');
  return cluster.server;
}

function checkServer(server: string): void {
  let url: URL;
  try {
    url = new URL(server);
  } catch (err) {
    throw new CcpipeError('INVALID_INPUT', `API server ${JSON.stringify(server)} is not a URL`, {
      cause: err,
    });
  }
  if (url.protocol !== 'https:') {
    throw new CcpipeError('INVALID_INPUT', `API server ${server} must be https://`);
  }
}

/** Puts `Authorization: Bearer <token>` on requests of users with our auth-provider. */
function tokenAuthenticator(token: TokenProvider, server: string): Authenticator {
  return {
    isAuthProvider: (user) => user?.authProvider?.name === TOKEN_AUTH_PROVIDER,
    applyAuthentication: async (_user, opts) => {
      let value: string;
      try {
        value = await token();
      } catch (err) {
        throw new CcpipeError('UNAUTHORIZED', `no bearer token for ${server}`, {
          cause: err,
          retryable: true,
        });
      }
      opts.headers = { ...opts.headers, Authorization: `Bearer ${value}` };
    },
  };
}
