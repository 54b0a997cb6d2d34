#!/bin/sh
# azd preprovision: makes the webhook secret once per azd environment. azd keeps it in the
# environment (.azure/<env>/.env, not committed) and passes it to the infra parameter
# webhookSecret, which stores it in Key Vault; reprovisioning reuses it. Hex, so that it is one
# token in an Authorization header and never starts with '-'.
set -eu
if [ -z "${CCPIPE_WEBHOOK_SECRET:-}" ]; then
  secret=$(node -e "process.stdout.write(require('node:crypto').randomBytes(32).toString('hex'))")
  azd env set CCPIPE_WEBHOOK_SECRET "$secret"
  echo "ccpipe: generated a webhook secret (azd env get-value CCPIPE_WEBHOOK_SECRET)"
fi
