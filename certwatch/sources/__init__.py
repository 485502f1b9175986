"""Where certificates come from: the certstream consumer (:mod:`.certstream`), which owns
the WebSocket."""
