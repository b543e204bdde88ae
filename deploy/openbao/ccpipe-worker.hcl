# Pipeline workers (Beam DoFns): unwrap tenant and dead-letter data keys, nothing else. They cannot
# read, create, rotate, export, back up or delete a key-encryption key; without "create" on encrypt no
# transit key is ever made implicitly; and they cannot unwrap the audit log's HMAC key.
# Give ccpipe a transit mount of its own (--kms openbao://HOST:PORT/ccpipe-transit) and write its
# path here instead of "transit" ("+" matches any one key name in it), and "ccpipe-" by your --kms
# prefix. The denials below win over any other policy attached to the same token: a worker token gets
# this policy only.
path "transit/decrypt/+" {
  capabilities = ["update"]
}

# The audit log's HMAC key (owner "_audit"): whoever unwraps it can forge the audit chain.
path "transit/decrypt/ccpipe-_audit" {
  capabilities = ["deny"]
}
path "transit/encrypt/*" {
  capabilities = ["deny"]
}
path "transit/rewrap/*" {
  capabilities = ["deny"]
}
path "transit/datakey/*" {
  capabilities = ["deny"]
}
path "transit/keys/*" {
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
