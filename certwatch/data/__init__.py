"""Data shipped with certwatch: ``ca-identities.json.gz``, the CA keys of the CCADB snapshot
with their owners and CAA identifiers (see :mod:`certwatch.cadata`)."""
