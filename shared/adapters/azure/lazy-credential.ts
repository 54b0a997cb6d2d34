/**
 * A `TokenCredential` that builds the real one on the first token request. Constructing ccpipe's
 * services (tests, the local stack, `ccpipe verify` against the local key store) therefore never
 * instantiates `@azure/identity`, never reads its environment and never reaches Entra ID or the
 * instance metadata service; only a Key Vault call that needs a token does.
 */
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/identity';

/** Makes the credential that {@link LazyCredential} delegates to. */
export type CredentialFactory = () => Promise<TokenCredential>;

/** Delegates to the credential `factory` makes, calling `factory` at most once. */
export class LazyCredential implements TokenCredential {
  private inner: Promise<TokenCredential> | undefined;

  constructor(private readonly factory: CredentialFactory) {}

  /** True once a token was asked for (and so the real credential exists or is being made). */
  get created(): boolean {
    return this.inner !== undefined;
  }

  async getToken(
    scopes: string | string[],
    options?: GetTokenOptions,
  ): Promise<AccessToken | null> {
    this.inner ??= this.factory().catch((err: unknown) => {
      this.inner = undefined;
      throw err;
    });
    return (await this.inner).getToken(scopes, options);
  }
}

/**
 * The Azure credential ccpipe uses for Key Vault: `DefaultAzureCredential`, which in Azure
 * Functions and AKS resolves to the managed identity or workload identity (a user-assigned
 * identity through `AZURE_CLIENT_ID`) and on an operator's machine to the Azure CLI login.
 * Created lazily; see the module comment.
 */
export function azureCredential(managedIdentityClientId?: string): LazyCredential {
  return new LazyCredential(async () => {
    const { DefaultAzureCredential } = await import('@azure/identity');
    return managedIdentityClientId
      ? new DefaultAzureCredential({ managedIdentityClientId })
      : new DefaultAzureCredential();
  });
}
