"""The pure core: what certwatch knows and decides, with no I/O.

Names and the watch index (:mod:`.names`), certificate facts (:mod:`.certificates`) and
issuance identity (:mod:`.identity`), decoding the feed (:mod:`.messages`), recognising the
organisation's own certificates (:mod:`.recognition`), and alerts and their payload
(:mod:`.alerts`). Nothing here imports trio, httpx, sqlite3, Quart or Hypercorn: an
import-linter contract in ``.ci/run`` keeps it so, and it is all tested without sockets.
"""
