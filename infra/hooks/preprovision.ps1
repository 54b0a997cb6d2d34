# azd preprovision (Windows): makes the webhook secret once per azd environment; see
# preprovision.sh.
$ErrorActionPreference = 'Stop'
if (-not $env:CCPIPE_WEBHOOK_SECRET) {
  $secret = node -e "process.stdout.write(require('node:crypto').randomBytes(32).toString('hex'))"
  azd env set CCPIPE_WEBHOOK_SECRET $secret
  Write-Host 'ccpipe: generated a webhook secret (azd env get-value CCPIPE_WEBHOOK_SECRET)'
}
