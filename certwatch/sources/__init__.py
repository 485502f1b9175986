"""Where certificates come from, each module owning one resource or one job:

- :mod:`.certstream`: the feed's WebSocket;
- :mod:`.ctlog`: HTTP reads from CT logs (one client for every log);
- :mod:`.loglist`: the CT log list (``CT_LOG_LIST``);
- :mod:`.heads`: tree heads, checked for consistency before they are believed;
- :mod:`.entries`: a matched log entry, verified and handed on like a live message;
- :mod:`.backfill`: filling coverage's gaps from the logs (the leader);
- :mod:`.lookups`: the entry of a matched certificate without DER (every replica);
- :mod:`.prefetch`: reading a few requests ahead, processing in order.
"""
