# The pipeline driver (`ccpipe batch` / `ccpipe stream` before workers start): creates missing owner
# KEKs (type aes256-gcm96, not exportable: no other value is accepted) and wraps new data keys. No
# rotate, config, trim or delete, and nothing of the audit log's key. Replace "transit" by ccpipe's own
# transit mount and "ccpipe-" by your --kms prefix. Workers that share the driver's token file get this
# policy alone (it unwraps too); never attach ccpipe-admin to the same token.
path "transit/keys/+" {
  capabilities = ["create", "update", "read"]  # POST on an existing key is a no-op in transit
  allowed_parameters = {
    "type"                   = ["aes256-gcm96"]
    "exportable"             = [false]
    "allow_plaintext_backup" = [false]
  }
}
path "transit/encrypt/+" {
  capabilities = ["update"]
}
path "transit/decrypt/+" {
  capabilities = ["update"]
}

# Explicit denials win over any other policy attached to the same token.
# The audit log's HMAC key (owner "_audit"): whoever unwraps it can forge the audit chain.
path "transit/keys/ccpipe-_audit" {
  capabilities = ["deny"]
}
path "transit/keys/ccpipe-_audit/*" {
  capabilities = ["deny"]
}
path "transit/encrypt/ccpipe-_audit" {
  capabilities = ["deny"]
}
path "transit/decrypt/ccpipe-_audit" {
  capabilities = ["deny"]
}
path "transit/rewrap/*" {
  capabilities = ["deny"]
}
path "transit/datakey/*" {
  capabilities = ["deny"]
}
# Key lifecycle (rotate, config, trim, import, soft-delete, ...) belongs to ccpipe-admin.
path "transit/keys/+/*" {
  capabilities = ["deny"]
}
path "transit/export/*" {
  capabilities = ["deny"]
}
path "transit/backup/*" {
  capabilities = ["deny"]
}
path "transit/restore" {
  capabilities = ["deny"]
}
path "transit/restore/*" {
  capabilities = ["deny"]
}
