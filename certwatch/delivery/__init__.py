"""Getting alerts out: the webhook sender (:mod:`.webhook`), which owns the HTTP client and
delivers from the outbox at least once."""
