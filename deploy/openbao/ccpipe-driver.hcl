# The pipeline driver (`ccpipe batch` / `ccpipe stream` before workers start): creates missing owner
# KEKs (type aes256-gcm96, not exportable) and wraps new data keys. No rotate, config, trim or delete.
# Replace "transit" by ccpipe's own transit mount.
path "transit/keys/+" {
  capabilities = ["create", "update", "read"]  # POST on an existing key is a no-op in transit
}
path "transit/encrypt/+" {
  capabilities = ["update"]
}
path "transit/decrypt/+" {
  capabilities = ["update"]
}
