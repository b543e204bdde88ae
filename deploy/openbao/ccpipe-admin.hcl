# Key lifecycle (`ccpipe keys init|rotate|shred`, `ccpipe retention run`): what the driver may do, plus
# rotate, raise minimum versions, trim old versions and delete (crypto-shredding). No path here can
# export key material. Replace "transit" by ccpipe's own transit mount.
path "transit/keys/+" {
  capabilities = ["create", "update", "read", "delete"]
}
path "transit/keys/+/rotate" {
  capabilities = ["update"]
}
path "transit/keys/+/config" {
  capabilities = ["update"]
}
path "transit/keys/+/trim" {
  capabilities = ["update"]
}
path "transit/encrypt/+" {
  capabilities = ["update"]
}
path "transit/decrypt/+" {
  capabilities = ["update"]
}
