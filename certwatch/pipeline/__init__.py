"""The work between the edges: frames to matches (:mod:`.matching`), which log each frame
belongs to and the gaps it leaves (:mod:`.coverage`), matches to stored, decided alerts
(:mod:`.alerter`), expiry (:mod:`.cleanup`), and reading slow things for many askers
(:mod:`.probe`)."""
