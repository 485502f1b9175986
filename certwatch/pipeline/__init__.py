"""The work between the edges: frames to matches (:mod:`.matching`), matches to stored,
decided alerts (:mod:`.alerter`), and expiry (:mod:`.cleanup`)."""
