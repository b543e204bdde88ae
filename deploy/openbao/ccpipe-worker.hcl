# Pipeline workers (Beam DoFns): unwrap data keys, nothing else. They cannot create, rotate, export or
# delete a key-encryption key; without "create" on encrypt no transit key is ever made implicitly.
# Give ccpipe a transit mount of its own (--kms openbao://HOST:PORT/ccpipe-transit) and write its
# path here instead of "transit": "+" matches any one key name in it.
path "transit/decrypt/+" {
  capabilities = ["update"]
}
