# Key lifecycle (`ccpipe keys init|rotate|shred`, `ccpipe retention run`): what the driver may do, plus
# rotate, raise minimum versions, trim old versions and delete (crypto-shredding). No path here can
# export key material, and no parameter here can make a key exportable or backed up in plaintext
# (that would let a copy of a KEK undo a shred): create and config accept only the fields ccpipe sets.
# ccpipe also reads every key back and refuses one that is exportable, allows plaintext backup or was
# imported. Replace "transit" by ccpipe's own transit mount (and "ccpipe-" by your --kms prefix).
path "transit/keys/+" {
  capabilities = ["create", "update", "read", "delete"]
  allowed_parameters = {
    "type"                   = ["aes256-gcm96"]
    "exportable"             = [false]
    "allow_plaintext_backup" = [false]
  }
}
path "transit/keys/+/rotate" {
  capabilities = ["update"]
}
path "transit/keys/+/config" {
  capabilities = ["update"]
  allowed_parameters = {
    "deletion_allowed"       = []
    "min_decryption_version" = []
    "min_encryption_version" = []
  }
  denied_parameters = {
    "exportable"             = []
    "allow_plaintext_backup" = []
  }
}
path "transit/keys/+/trim" {
  capabilities = ["update"]
  allowed_parameters = {
    "min_available_version" = []
  }
}
path "transit/encrypt/+" {
  capabilities = ["update"]
}
path "transit/decrypt/+" {
  capabilities = ["update"]
}

# Explicit denials win over any other policy attached to the same token.
path "transit/backup/*" {
  capabilities = ["deny"]
}
path "transit/restore" {
  capabilities = ["deny"]
}
path "transit/restore/*" {
  capabilities = ["deny"]
}
path "transit/export/*" {
  capabilities = ["deny"]
}
path "transit/keys/+/import" {
  capabilities = ["deny"]
}
path "transit/keys/+/import_version" {
  capabilities = ["deny"]
}
