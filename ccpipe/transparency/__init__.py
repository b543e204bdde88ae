"""Government data requests (SPEC §7): the ledger, its rules, and the semiannual transparency report."""
